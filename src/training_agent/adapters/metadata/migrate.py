"""Applies the shipped SQL migrations in order, once each, recording them in schema_migrations."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def migration_files(dialect: str) -> list[Traversable]:
    folder = resources.files("training_agent.adapters.metadata") / "migrations" / dialect
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
