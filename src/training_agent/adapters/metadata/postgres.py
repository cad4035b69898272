"""Postgres MetadataRepo (psycopg 3, pooled): one database shared by agents on many machines.

The atomic operations (claims, guarded job saves, recording a model) are SQL functions shipped in
the migrations, shared with the Supabase adapter, which calls the same functions by RPC.
"""

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

from training_agent.domain.errors import (
    Conflict,
    DatasetNotFound,
    JobNotFound,
    MetadataError,
    MetadataPermissionDenied,
    ProjectNotFound,
)
from training_agent.domain.models import (
    Dataset,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    new_id,
)
from training_agent.domain.ports import MetadataRepo

from .migrate import migration_files
from .rows import ACTIVE_STATE_VALUES, JSON_COLUMNS, decode, is_uuid

_MIGRATION_LOCK = 7_201_553_301  # pg_advisory_xact_lock key: one migrator at a time


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k: Jsonb(v) if k in JSON_COLUMNS else v.value if isinstance(v, Enum) else v
            for k, v in row.items()}


def describe_dsn(dsn: str) -> str:
    """Where the store is, for messages: host, port and database, never the password."""
    info = conninfo_to_dict(dsn)
    return (f"postgres {info.get('host', 'localhost')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}")


class PostgresMetadataRepo(MetadataRepo):
    """Every call fails fast while the database is away, and works again within seconds of its
    return: `wait_timeout` bounds the wait for a connection (then MetadataError: a 503 on the
    API), `connect_timeout` each connection attempt (unless the DSN sets one), and
    `statement_timeout` each statement; a failed reconnection is given up after
    `reconnect_timeout`, so the next call tries afresh instead of waiting out a long backoff."""

    def __init__(self, dsn: str, migrate: bool = True, pool_size: int = 4, *,
                 wait_timeout: float = 5.0, down_wait_timeout: float = 1.0,
                 connect_timeout: int = 3, statement_timeout: float = 15.0,
                 reconnect_timeout: float = 5.0) -> None:
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
        if migrate:
            self.migrate()

    def _configure(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self._statement_ms)))
        conn.commit()

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _tx(self, not_found: Exception | None = None
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
        applied: list[str] = []
        with self._tx() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # DDL, and waiting for a migrator
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            # keep it out of reach of a Supabase anon key (the owner is not affected)
            conn.execute("ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY")
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            for f in migration_files("postgres"):
                if f.name in done:
                    continue
                conn.execute(f.read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (f.name,))
                applied.append(f.name)
        return applied

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(map(sql.Placeholder, row)))
        with self._tx() as conn:
            conn.execute(query, _params(row))

    def _one(self, query: str, *args: Any,
             not_found: Exception | None = None) -> dict[str, Any] | None:
        with self._tx(not_found) as conn:
            row = conn.execute(query, args).fetchone()  # type: ignore[arg-type]
        return decode(row) if row else None

    def _all(self, query: str, *args: Any) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return [decode(r) for r in conn.execute(query, args).fetchall()]  # type: ignore[arg-type]

    # ---- projects and datasets ----------------------------------------------------------------
    def add_project(self, project: Project) -> Project:
        self._insert("projects", project.model_dump())
        return project

    def get_project(self, project_id: str) -> Project:
        row = self._one("SELECT * FROM projects WHERE id = %s", project_id) if is_uuid(
            project_id) else None
        if row is None:
            raise ProjectNotFound(project_id)
        return Project.model_validate(row)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        rows = self._all(
            "SELECT to_jsonb(p) AS project, to_jsonb(j) AS job FROM projects p "
            "LEFT JOIN LATERAL (SELECT * FROM training_jobs t WHERE t.project_id = p.id "
            "ORDER BY t.created_at DESC, t.id DESC LIMIT 1) j ON true "
            "ORDER BY p.created_at DESC, p.id DESC LIMIT %s OFFSET %s", limit, offset)
        return [(Project.model_validate(r["project"]),
                 TrainingJob.model_validate(r["job"]) if r["job"] else None) for r in rows]

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        if is_uuid(project_id):
            with self._tx() as conn:
                cur = conn.execute("UPDATE projects SET status = %s, updated_at = now() "
                                   "WHERE id = %s", (status.value, project_id))
                if cur.rowcount == 1:
                    return
        raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        self._insert("datasets", dataset.model_dump())
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        if is_uuid(dataset_id):
            with self._tx() as conn:
                cur = conn.execute("UPDATE datasets SET num_classes = %s WHERE id = %s",
                                   (num_classes, dataset_id))
                if cur.rowcount == 1:
                    return
        raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        row = self._one("SELECT * FROM datasets WHERE project_id = %s "
                        "ORDER BY created_at DESC, id DESC LIMIT 1", project_id) if is_uuid(
            project_id) else None
        if row is None:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(row)

    # ---- jobs ---------------------------------------------------------------------------------
    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        if not is_uuid(job.project_id):
            raise ProjectNotFound(job.project_id)
        states = sorted(s.value for s in allowed) if allowed is not None else None
        row = self._one("SELECT * FROM claim_training_job(%s, %s)",
                        Jsonb(job.model_dump(mode="json")), states,
                        not_found=ProjectNotFound(job.project_id))
        assert row is not None
        return TrainingJob.model_validate(row)

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        row = self._one("SELECT * FROM claim_next_training_job(%s, %s)", worker_id, new_id())
        return TrainingJob.model_validate(row) if row else None

    def get_job(self, job_id: str) -> TrainingJob:
        row = self._one("SELECT * FROM training_jobs WHERE id = %s", job_id) if is_uuid(
            job_id) else None
        if row is None:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(row)

    def latest_job(self, project_id: str) -> TrainingJob | None:
        row = self._one("SELECT * FROM training_jobs WHERE project_id = %s "
                        "ORDER BY created_at DESC, id DESC LIMIT 1", project_id) if is_uuid(
            project_id) else None
        return TrainingJob.model_validate(row) if row else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        row = self._one("SELECT * FROM training_jobs WHERE idempotency_key = %s", key)
        return TrainingJob.model_validate(row) if row else None

    def save_job(self, job: TrainingJob) -> bool:
        row = self._one("SELECT save_training_job(%s) AS saved",
                        Jsonb(job.model_dump(mode="json")), not_found=JobNotFound(f"job {job.id}"))
        return bool(row and row["saved"])

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        if not is_uuid(job_id):
            raise JobNotFound(f"job {job_id}")
        row = self._one("SELECT touch_training_job(%s, %s) AS touched", job_id, worker_id,
                        not_found=JobNotFound(f"job {job_id}"))
        return bool(row and row["touched"])

    def active_jobs(self) -> list[TrainingJob]:
        return [TrainingJob.model_validate(r) for r in self._all(
            "SELECT * FROM training_jobs WHERE state = ANY(%s) ORDER BY created_at",
            list(ACTIVE_STATE_VALUES))]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        self._one("SELECT record_trained_model(%s, %s) AS done",
                  Jsonb(model.model_dump(mode="json")), Jsonb(job.model_dump(mode="json")))

    def list_models(self, project_id: str) -> list[ModelRecord]:
        if not is_uuid(project_id):
            return []
        return [ModelRecord.model_validate(r) for r in self._all(
            "SELECT * FROM models WHERE project_id = %s ORDER BY created_at, id", project_id)]

    # ---- logs ---------------------------------------------------------------------------------
    def add_log(self, entry: LogEntry) -> None:
        self._insert("agent_logs", entry.model_dump(exclude={"id"}))

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        if not is_uuid(project_id):
            return []
        return [LogEntry.model_validate(r) for r in self._all(
            "SELECT * FROM agent_logs WHERE project_id = %s ORDER BY id DESC LIMIT %s",
            project_id, limit)]

    def ping(self) -> None:
        self._one("SELECT 1 AS ok")
