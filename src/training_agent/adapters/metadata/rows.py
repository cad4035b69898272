"""Row <-> domain conversions shared by the SQL-backed MetadataRepos."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from training_agent.domain.models import ACTIVE_STATES

ACTIVE_STATE_VALUES = tuple(sorted(s.value for s in ACTIVE_STATES))
JSON_COLUMNS = ("training_config", "metadata", "details", "config", "progress")


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
