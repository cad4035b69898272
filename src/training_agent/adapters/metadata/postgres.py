"""Postgres MetadataRepo (psycopg 3, pooled): one database shared by agents on many machines.

The atomic operations (claims, guarded job saves, recording a model) are SQL functions shipped in
the migrations, shared with the Supabase adapter, which calls the same functions by RPC.
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from training_agent.domain.errors import DatasetNotFound, JobNotFound, ProjectNotFound
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

from .postgres_pool import PostgresPool, describe_dsn
from .rows import ACTIVE_STATE_VALUES, is_uuid, status_values

__all__ = ["PostgresMetadataRepo", "PostgresProjects", "describe_dsn"]


class PostgresProjects(MetadataRepo):
    """PostgresMetadataRepo's projects and datasets."""

    _db: PostgresPool

    def add_project(self, project: Project) -> Project:
        self._db.insert("projects", project.model_dump())
        return project

    def get_project(self, project_id: str) -> Project:
        row = self._db.one("SELECT * FROM projects WHERE id = %s", project_id) if is_uuid(
            project_id) else None
        if row is None:
            raise ProjectNotFound(project_id)
        return Project.model_validate(row)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        rows = self._db.many(
            "SELECT to_jsonb(p) AS project, to_jsonb(j) AS job FROM projects p "
            "LEFT JOIN LATERAL (SELECT * FROM training_jobs t WHERE t.project_id = p.id "
            "ORDER BY t.created_at DESC, t.id DESC LIMIT 1) j ON true "
            "ORDER BY p.created_at DESC, p.id DESC LIMIT %s OFFSET %s", limit, offset)
        return [(Project.model_validate(r["project"]),
                 TrainingJob.model_validate(r["job"]) if r["job"] else None) for r in rows]

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        if is_uuid(project_id):
            with self._db.tx() as conn:
                cur = conn.execute("UPDATE projects SET status = %s, updated_at = now() "
                                   "WHERE id = %s", (status.value, project_id))
                if cur.rowcount == 1:
                    return
        raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        self._db.insert("datasets", dataset.model_dump())
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        if is_uuid(dataset_id):
            with self._db.tx() as conn:
                cur = conn.execute("UPDATE datasets SET num_classes = %s WHERE id = %s",
                                   (num_classes, dataset_id))
                if cur.rowcount == 1:
                    return
        raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        row = self._db.one("SELECT * FROM datasets WHERE project_id = %s "
                           "ORDER BY created_at DESC, id DESC LIMIT 1", project_id) if is_uuid(
            project_id) else None
        if row is None:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(row)


class PostgresMetadataRepo(PostgresProjects):
    """Every call fails fast while the database is away, and works again within seconds of its
    return: `wait_timeout` bounds the wait for a connection (then MetadataError: a 503 on the
    API), `connect_timeout` each connection attempt (unless the DSN sets one), and
    `statement_timeout` each statement; a failed reconnection is given up after
    `reconnect_timeout`, so the next call tries afresh instead of waiting out a long backoff.
    Jobs, models and logs are here; projects and datasets in PostgresProjects; the pool,
    errors and migrations in PostgresPool."""

    def __init__(self, dsn: str, migrate: bool = True, pool_size: int = 4, *,
                 wait_timeout: float = 5.0, down_wait_timeout: float = 1.0,
                 connect_timeout: int = 3, statement_timeout: float = 15.0,
                 reconnect_timeout: float = 5.0) -> None:
        self._db = PostgresPool(
            dsn, pool_size, wait_timeout=wait_timeout, down_wait_timeout=down_wait_timeout,
            connect_timeout=connect_timeout, statement_timeout=statement_timeout,
            reconnect_timeout=reconnect_timeout)
        self.where = self._db.where
        if migrate:
            self.migrate()

    def close(self) -> None:
        self._db.close()

    def migrate(self) -> list[str]:
        return self._db.migrate()

    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        if not is_uuid(job.project_id):
            raise ProjectNotFound(job.project_id)
        row = self._db.one("SELECT * FROM claim_training_job(%s, %s)",
                           Jsonb(job.model_dump(mode="json")), status_values(allowed),
                           not_found=ProjectNotFound(job.project_id))
        assert row is not None
        return TrainingJob.model_validate(row)

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        row = self._db.one("SELECT * FROM claim_next_training_job(%s, %s)", worker_id, new_id())
        return TrainingJob.model_validate(row) if row else None

    def get_job(self, job_id: str) -> TrainingJob:
        row = self._db.one("SELECT * FROM training_jobs WHERE id = %s", job_id) if is_uuid(
            job_id) else None
        if row is None:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(row)

    def latest_job(self, project_id: str) -> TrainingJob | None:
        row = self._db.one("SELECT * FROM training_jobs WHERE project_id = %s "
                           "ORDER BY created_at DESC, id DESC LIMIT 1", project_id) if is_uuid(
            project_id) else None
        return TrainingJob.model_validate(row) if row else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        row = self._db.one("SELECT * FROM training_jobs WHERE idempotency_key = %s", key)
        return TrainingJob.model_validate(row) if row else None

    def save_job(self, job: TrainingJob) -> bool:
        row = self._db.one("SELECT save_training_job(%s) AS saved",
                           Jsonb(job.model_dump(mode="json")),
                           not_found=JobNotFound(f"job {job.id}"))
        return bool(row and row["saved"])

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        if not is_uuid(job_id):
            raise JobNotFound(f"job {job_id}")
        row = self._db.one("SELECT touch_training_job(%s, %s) AS touched", job_id, worker_id,
                           not_found=JobNotFound(f"job {job_id}"))
        return bool(row and row["touched"])

    def active_jobs(self) -> list[TrainingJob]:
        return [TrainingJob.model_validate(r) for r in self._db.many(
            "SELECT * FROM training_jobs WHERE state = ANY(%s) ORDER BY created_at",
            list(ACTIVE_STATE_VALUES))]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        self._db.one("SELECT record_trained_model(%s, %s) AS done",
                     Jsonb(model.model_dump(mode="json")), Jsonb(job.model_dump(mode="json")))

    def list_models(self, project_id: str) -> list[ModelRecord]:
        if not is_uuid(project_id):
            return []
        return [ModelRecord.model_validate(r) for r in self._db.many(
            "SELECT * FROM models WHERE project_id = %s ORDER BY created_at, id", project_id)]

    def add_log(self, entry: LogEntry) -> None:
        self._db.insert("agent_logs", entry.model_dump(exclude={"id"}))

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        if not is_uuid(project_id):
            return []
        return [LogEntry.model_validate(r) for r in self._db.many(
            "SELECT * FROM agent_logs WHERE project_id = %s ORDER BY id DESC LIMIT %s",
            project_id, limit)]

    def ping(self) -> None:
        self._db.one("SELECT 1 AS ok")
