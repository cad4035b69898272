"""Row <-> domain conversions shared by the SQL-backed MetadataRepos."""

from __future__ import annotations

import json
import types
import typing
import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from training_agent.domain.models import (
    ACTIVE_STATES,
    Dataset,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
)

ACTIVE_STATE_VALUES = tuple(sorted(s.value for s in ACTIVE_STATES))
ROW_MODELS: tuple[type[BaseModel], ...] = (Project, Dataset, TrainingJob, ModelRecord, LogEntry)


def _is_dict(annotation: Any) -> bool:
    """dict, dict[...], or an optional one."""
    if getattr(annotation, "__origin__", annotation) is dict:
        return True
    return any(_is_dict(a) for a in typing.get_args(annotation)
               if typing.get_origin(annotation) in (typing.Union, types.UnionType))


def json_columns(*models: type[BaseModel]) -> frozenset[str]:
    """The columns stored as JSON: the models' fields typed as a dict (a column added to a
    model as `dict[str, Any]`, optional or not, is stored as JSON with no list to update)."""
    return frozenset((f.alias or name) for m in models for name, f in m.model_fields.items()
                     if _is_dict(f.annotation))


JSON_COLUMNS = json_columns(*ROW_MODELS)


def ts(value: datetime | None) -> str | None:
    """A fixed-width UTC timestamp, so text order is time order."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def encode(row: dict[str, Any]) -> dict[str, Any]:
    """Domain dict -> SQL parameters: JSON text for json columns, text timestamps."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in JSON_COLUMNS:
            out[key] = json.dumps(value)
        elif isinstance(value, datetime):
            out[key] = ts(value)
        elif hasattr(value, "value"):  # enums
            out[key] = value.value
        else:
            out[key] = value
    return out


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """SQL row -> domain dict: JSON text parsed, uuid values as text."""
    return {k: (json.loads(v) if k in JSON_COLUMNS and isinstance(v, str)
                else str(v) if isinstance(v, uuid.UUID) else v)
            for k, v in row.items()}


def is_uuid(value: str) -> bool:
    """Ids are uuids in Postgres: anything else names no row there (rather than a type error)."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def projects_with_jobs(projects: list[dict[str, Any]], latest: dict[str, dict[str, Any]]
                       ) -> list[tuple[Project, TrainingJob | None]]:
    """Project rows as models, each with the model of its latest job's row in `latest` (by
    project id), or None: a page of list_projects."""
    return [(Project.model_validate(p), TrainingJob.model_validate(latest[p["id"]])
             if p["id"] in latest else None) for p in projects]


def status_values(allowed: frozenset[ProjectStatus] | None) -> list[str] | None:
    """A claim's allowed project statuses as the SQL functions take them (None: any)."""
    return sorted(s.value for s in allowed) if allowed is not None else None
