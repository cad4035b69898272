"""Additions to the OpenAPI document Litestar generates: the training config's own schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.openapi.spec import Reference, Schema

from training_agent.domain.config import config_json_schema

CONFIG_SCHEMA_NAME = "TrainingConfig"


@dataclass
class JsonSchema(Schema):
    """A schema given as JSON Schema (2020-12, what OpenAPI 3.1 uses) and emitted as is,
    keeping what the spec dataclasses drop (`default: null`) or lack (`const`)."""

    raw: dict[str, Any] = field(default_factory=dict)

    def to_schema(self) -> dict[str, Any]:
        return self.raw


def document_config(app: Litestar, bodies: dict[str, str]) -> None:
    """Put the training config's schema (every knob: type, range, default, meaning) under
    components/schemas/TrainingConfig and point each `bodies` schema's property (body schema
    name -> property) at it, where the model types it as a free object (it is validated, with
    errors naming each key, by the service)."""
    spec = app.openapi_schema
    if spec.components.schemas is None:  # pragma: no cover - Litestar always fills it
        spec.components.schemas = {}
    schemas = spec.components.schemas
    schemas[CONFIG_SCHEMA_NAME] = JsonSchema(raw=config_json_schema())
    for body, prop in bodies.items():
        target = schemas[body]
        assert isinstance(target, Schema) and target.properties is not None, body
        old = target.properties[prop]
        description = old.description if isinstance(old, Schema) else None
        target.properties[prop] = JsonSchema(raw={
            "anyOf": [{"$ref": Reference(f"#/components/schemas/{CONFIG_SCHEMA_NAME}").ref},
                      {"type": "null"}],
            "description": (description or "training config")
            + "; any subset of TrainingConfig's keys (`training-agent config --schema`)",
        })
