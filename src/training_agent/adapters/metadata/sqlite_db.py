"""The SQLite database file under SqliteMetadataRepo: connections, transactions, the domain's
errors, migrations and row helpers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training_agent.domain.disk import free_bytes
from training_agent.domain.errors import Conflict, MetadataError
from training_agent.domain.models import utcnow

from .migrate import pending_migrations
from .rows import decode, encode, ts

# below this much free space an SQLite I/O error is taken for a full disk
FULL_DISK_BELOW = 1 << 20


class SqliteDatabase:
    """One database file in WAL mode, safe across threads and processes: each call opens its
    own connection, and SQLite errors come out as the domain's (Conflict, MetadataError)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            yield conn
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):  # a second job with one Idempotency-Key (or active job)
                raise Conflict(f"sqlite store {self.path}: {exc}") from exc
            raise MetadataError(f"sqlite store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise MetadataError(self._describe(exc)) from exc
        finally:
            conn.close()

    def _describe(self, exc: sqlite3.Error) -> str:
        """The error's text; on a full disk it says so. Each call has its own connection, so
        between calls SQLite deletes its WAL index (-shm), and on a full disk the next call
        cannot create it: only "disk I/O error" (SQLITE_IOERR_SHMSIZE), reads included."""
        text = f"sqlite store {self.path}: {exc}"
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_IOERR"):
            free = free_bytes(self.path)
            if free < FULL_DISK_BELOW:
                text += f" (no space left on device: {free} bytes free on its disk)"
        return text

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Applies the shipped migrations not yet recorded; returns their names."""
        applied: list[str] = []
        with self.tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for f in pending_migrations("sqlite", done):
                for statement in f.read_text().split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (f.name, ts(utcnow())))
                applied.append(f.name)
        return applied

    def one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with self.connect() as conn:
            row = conn.execute(sql, args).fetchone()
        return decode(dict(row)) if row else None

    def many(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return rows(conn.execute(sql, args))


def rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """A cursor's rows as domain dicts."""
    return [decode(dict(r)) for r in cursor.fetchall()]


def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    """Inserts a domain dict (model_dump) into `table` within the caller's transaction."""
    row = encode(row)
    cols = ", ".join(row)
    marks = ", ".join(f":{c}" for c in row)
    conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", row)
