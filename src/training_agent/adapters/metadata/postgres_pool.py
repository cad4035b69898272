"""The connection pool under PostgresMetadataRepo: transactions, the domain's errors, migrations
and row helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from training_agent.domain.errors import Conflict, MetadataError, MetadataPermissionDenied

from .migrate import pending_migrations
from .rows import JSON_COLUMNS, decode

_MIGRATION_LOCK = 7_201_553_301  # pg_advisory_xact_lock key: one migrator at a time


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in JSON_COLUMNS else v.value if isinstance(v, Enum) else v
            for k, v in row.items()}


def describe_dsn(dsn: str) -> str:
    """Where the store is, for messages: host, port and database, never the password."""
    info = conninfo_to_dict(dsn)
    return (f"postgres {info.get('host', 'localhost')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}")


class PostgresPool:
    """Pooled psycopg connections to one database, with the timeouts PostgresMetadataRepo
    describes; database errors come out as the domain's."""

    def __init__(self, dsn: str, pool_size: int, *, wait_timeout: float,
                 down_wait_timeout: float, connect_timeout: int, statement_timeout: float,
                 reconnect_timeout: float) -> None:
        self.where = describe_dsn(dsn)
        self._wait = wait_timeout
        # while the last call found no connection, calls wait only this long: an outage is
        # answered at once (a 503), and a call still gets the first connection back
        self._down_wait = min(down_wait_timeout, wait_timeout)
        self._down = False
        self._statement_ms = int(statement_timeout * 1000)
        kwargs: dict[str, Any] = {"row_factory": dict_row, "prepare_threshold": None}
        if "connect_timeout" not in conninfo_to_dict(dsn):
            kwargs["connect_timeout"] = connect_timeout
        # prepare_threshold=None: no server-side prepared statements, so Supabase's transaction
        # pooler (pgbouncer/supavisor, port 6543) works as well as a direct connection.
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            dsn, min_size=1, max_size=pool_size, timeout=wait_timeout, open=True,
            kwargs=kwargs, configure=self._configure, check=ConnectionPool.check_connection,
            reconnect_timeout=reconnect_timeout, max_waiting=8 * pool_size,
            name="training-agent")

    def _configure(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self._statement_ms)))
        conn.commit()

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def tx(self, not_found: Exception | None = None
           ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction; database errors become the domain's (`not_found` for PT404)."""
        try:
            with self._pool.connection(self._down_wait if self._down else self._wait) as conn:
                self._down = False
                yield conn
        except PoolTimeout as exc:
            self._down = True
            raise MetadataError(f"{self.where} is unreachable: {exc}", unreachable=True) \
                from exc
        except psycopg.errors.UniqueViolation as exc:  # one Idempotency-Key, one job
            raise Conflict(str(exc.diag.message_primary)) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise MetadataPermissionDenied(f"{self.where}: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            if exc.sqlstate == "PT409":
                raise Conflict(str(exc.diag.message_primary)) from exc
            if exc.sqlstate == "PT404" and not_found is not None:
                raise not_found from exc
            lost = isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None
            if lost:
                self._down = True  # the connection went away (not an error of the query)
            raise MetadataError(f"{self.where}: {exc}", unreachable=lost) from exc

    def migrate(self) -> list[str]:
        """Applies the shipped migrations not yet recorded, one migrator at a time; returns
        their names."""
        applied: list[str] = []
        with self.tx() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # DDL, and waiting for a migrator
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            # keep it out of reach of a Supabase anon key (the owner is not affected)
            conn.execute("ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY")
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            for f in pending_migrations("postgres", done):
                conn.execute(f.read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (f.name,))
                applied.append(f.name)
        return applied

    def insert(self, table: str, row: dict[str, Any]) -> None:
        """Inserts a domain dict (model_dump) into `table`, in a transaction of its own."""
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(map(sql.Placeholder, row)))
        with self.tx() as conn:
            conn.execute(query, _params(row))

    def one(self, query: str, *args: Any,
            not_found: Exception | None = None) -> dict[str, Any] | None:
        with self.tx(not_found) as conn:
            row = conn.execute(query, args).fetchone()  # type: ignore[arg-type]
        return decode(row) if row else None

    def many(self, query: str, *args: Any) -> list[dict[str, Any]]:
        with self.tx() as conn:
            return [decode(r) for r in conn.execute(query, args).fetchall()]  # type: ignore[arg-type]
