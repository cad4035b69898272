"""Finds the shipped SQL migrations of a dialect, in the order they apply (once each, recorded in
schema_migrations by the store that runs them)."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

# The Postgres migrations are the Supabase project's own, kept where the Supabase CLI expects
# them; a wheel carries them in as migrations/postgres (pyproject's force-include), and an
# editable install reads them from the source tree.
_SOURCE_FOLDERS = {"postgres": Path(__file__).resolve().parents[4] / "supabase" / "migrations"}


def migration_files(dialect: str) -> list[Traversable]:
    folder: Traversable = resources.files("training_agent.adapters.metadata") / "migrations"
    folder = folder / dialect
    if not folder.is_dir() and dialect in _SOURCE_FOLDERS:
        folder = _SOURCE_FOLDERS[dialect]
    if not folder.is_dir():
        raise FileNotFoundError(f"no {dialect} migrations shipped at {folder}")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def pending_migrations(dialect: str, done: set[str]) -> list[Traversable]:
    """The shipped migrations whose names `done` (schema_migrations' versions) lacks, in order."""
    return [f for f in migration_files(dialect) if f.name not in done]
