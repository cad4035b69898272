"""SQLite MetadataRepo: the embedded default store, safe across threads and processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from training_agent.domain.errors import DatasetNotFound, JobNotFound, ProjectNotFound
from training_agent.domain.models import (
    JOB_SAVED_FIELDS,
    Dataset,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    claim_refusal,
    model_not_recorded,
    utcnow,
)
from training_agent.domain.ports import MetadataRepo

from .rows import ACTIVE_STATE_VALUES, decode, encode, projects_with_jobs, ts
from .sqlite_db import SqliteDatabase, insert, rows

_ACTIVE = "state IN (" + ",".join(f"'{s}'" for s in ACTIVE_STATE_VALUES) + ")"
# a save writes JOB_SAVED_FIELDS, and keeps the stored started_at when the job has none
_SAVE_SET = ", ".join(f"{c} = COALESCE(:{c}, {c})" if c == "started_at" else f"{c} = :{c}"
                      for c in JOB_SAVED_FIELDS)


def _claim(conn: sqlite3.Connection, job: TrainingJob,
           allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
    """claim_job's rules, within the caller's transaction."""
    row = conn.execute("SELECT status FROM projects WHERE id = ?", (job.project_id,)).fetchone()
    if row is None:
        raise ProjectNotFound(job.project_id)
    active = conn.execute(f"SELECT id FROM training_jobs WHERE project_id = ? AND {_ACTIVE}",
                          (job.project_id,)).fetchone()
    refusal = claim_refusal(job.project_id, row[0], active[0] if active else None, allowed)
    if refusal is not None:
        raise refusal
    insert(conn, "training_jobs", job.model_dump())
    _set_status(conn, job.project_id, ProjectStatus.TRAINING)
    return job


def _set_status(conn: sqlite3.Connection, project_id: str, status: ProjectStatus) -> bool:
    """Sets the project's status; False when there is no such project."""
    cur = conn.execute("UPDATE projects SET status = ?, updated_at = ? WHERE id = ?",
                       (status.value, ts(utcnow()), project_id))
    return cur.rowcount > 0


def _update_job(conn: sqlite3.Connection, job: TrainingJob) -> bool:
    """Writes the job's saved fields while the stored job is active; False if it is not."""
    row = encode(job.model_dump(include={"id", *JOB_SAVED_FIELDS}))
    cur = conn.execute(f"UPDATE training_jobs SET {_SAVE_SET} WHERE id = :id AND {_ACTIVE}", row)
    return cur.rowcount == 1


def _job_exists(conn: sqlite3.Connection, job_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM training_jobs WHERE id = ?", (job_id,)).fetchone()
    return row is not None


class SqliteProjects(MetadataRepo):
    """SqliteMetadataRepo's projects and datasets."""

    _db: SqliteDatabase

    def add_project(self, project: Project) -> Project:
        with self._db.tx() as conn:
            insert(conn, "projects", project.model_dump())
        return project

    def get_project(self, project_id: str) -> Project:
        row = self._db.one("SELECT * FROM projects WHERE id = ?", project_id)
        if row is None:
            raise ProjectNotFound(project_id)
        return Project.model_validate(row)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        with self._db.connect() as conn:  # one snapshot: the page and its jobs
            conn.execute("BEGIN")
            projects = rows(conn.execute(
                "SELECT * FROM projects ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset)))
            marks = ",".join("?" * len(projects))
            jobs = {r["project_id"]: r for r in rows(conn.execute(
                "SELECT * FROM training_jobs WHERE id IN (SELECT (SELECT j.id FROM training_jobs "
                "j WHERE j.project_id = p.id ORDER BY j.created_at DESC, j.rowid DESC LIMIT 1) "
                f"FROM projects p WHERE p.id IN ({marks}))", [p["id"] for p in projects]))}
            conn.execute("COMMIT")
        return projects_with_jobs(projects, jobs)

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        with self._db.tx() as conn:
            if not _set_status(conn, project_id, status):
                raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        with self._db.tx() as conn:
            insert(conn, "datasets", dataset.model_dump())
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        with self._db.tx() as conn:
            cur = conn.execute("UPDATE datasets SET num_classes = ? WHERE id = ?",
                               (num_classes, dataset_id))
            if cur.rowcount == 0:
                raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        row = self._db.one("SELECT * FROM datasets WHERE project_id = ? "
                           "ORDER BY created_at DESC, rowid DESC LIMIT 1", project_id)
        if row is None:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(row)


class SqliteMetadataRepo(SqliteProjects):
    """The embedded default store, one SQLite file: jobs, models and logs here; projects and
    datasets in SqliteProjects; connections and migrations in SqliteDatabase."""

    def __init__(self, path: Path, migrate: bool = True) -> None:
        self._db = SqliteDatabase(path)
        self.path = self._db.path
        if migrate:
            self.migrate()

    def migrate(self) -> list[str]:
        return self._db.migrate()

    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        with self._db.tx() as conn:
            return _claim(conn, job, allowed)

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        with self._db.tx() as conn:
            row = conn.execute(
                "SELECT id, training_config FROM projects p WHERE status = ? "
                f"AND NOT EXISTS (SELECT 1 FROM training_jobs j WHERE j.project_id = p.id "
                f"AND j.{_ACTIVE}) ORDER BY created_at LIMIT 1",
                (ProjectStatus.PENDING_TRAINING.value,)).fetchone()
            if row is None:
                return None
            project = decode(dict(row))
            job = TrainingJob(project_id=project["id"], config=project["training_config"],
                              worker_id=worker_id)
            return _claim(conn, job, frozenset({ProjectStatus.PENDING_TRAINING}))

    def get_job(self, job_id: str) -> TrainingJob:
        row = self._db.one("SELECT * FROM training_jobs WHERE id = ?", job_id)
        if row is None:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(row)

    def latest_job(self, project_id: str) -> TrainingJob | None:
        row = self._db.one("SELECT * FROM training_jobs WHERE project_id = ? "
                           "ORDER BY created_at DESC, rowid DESC LIMIT 1", project_id)
        return TrainingJob.model_validate(row) if row else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        row = self._db.one("SELECT * FROM training_jobs WHERE idempotency_key = ?", key)
        return TrainingJob.model_validate(row) if row else None

    def save_job(self, job: TrainingJob) -> bool:
        with self._db.tx() as conn:
            if _update_job(conn, job):
                return True
            if _job_exists(conn, job.id):
                return False
        raise JobNotFound(f"job {job.id}")

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        now = ts(utcnow())
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE training_jobs SET heartbeat_at = ?, updated_at = ?, "
                f"worker_id = COALESCE(?, worker_id) WHERE id = ? AND {_ACTIVE}",
                (now, now, worker_id, job_id))
            if cur.rowcount == 1:
                return True
            if _job_exists(conn, job_id):
                return False
        raise JobNotFound(f"job {job_id}")

    def active_jobs(self) -> list[TrainingJob]:
        return [TrainingJob.model_validate(r)
                for r in self._db.many(f"SELECT * FROM training_jobs WHERE {_ACTIVE}")]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        with self._db.tx() as conn:
            if not _update_job(conn, job):
                raise model_not_recorded(job.id)
            insert(conn, "models", model.model_dump())
            _set_status(conn, job.project_id, ProjectStatus.PENDING_EVALUATION)

    def list_models(self, project_id: str) -> list[ModelRecord]:
        return [ModelRecord.model_validate(r) for r in self._db.many(
            "SELECT * FROM models WHERE project_id = ? ORDER BY created_at, rowid", project_id)]

    def add_log(self, entry: LogEntry) -> None:
        with self._db.tx() as conn:
            insert(conn, "agent_logs", entry.model_dump(exclude={"id"}))

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        return [LogEntry.model_validate(r) for r in self._db.many(
            "SELECT * FROM agent_logs WHERE project_id = ? ORDER BY id DESC LIMIT ?",
            project_id, limit)]

    def ping(self) -> None:
        self._db.one("SELECT 1 AS ok")
