"""SQLite MetadataRepo: the embedded default store, safe across threads and processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training_agent.domain.disk import free_bytes
from training_agent.domain.errors import (
    Conflict,
    DatasetNotFound,
    JobNotFound,
    MetadataError,
    ProjectNotFound,
)
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

from .migrate import migration_files
from .rows import ACTIVE_STATE_VALUES, decode, encode, ts

# below this much free space an SQLite I/O error is taken for a full disk
FULL_DISK_BELOW = 1 << 20
_ACTIVE = "state IN (" + ",".join(f"'{s}'" for s in ACTIVE_STATE_VALUES) + ")"
# a save writes JOB_SAVED_FIELDS, and keeps the stored started_at when the job has none
_SAVE_SET = ", ".join(f"{c} = COALESCE(:{c}, {c})" if c == "started_at" else f"{c} = :{c}"
                      for c in JOB_SAVED_FIELDS)


class SqliteMetadataRepo(MetadataRepo):
    def __init__(self, path: Path, migrate: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        if migrate:
            self.migrate()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
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
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for f in migration_files("sqlite"):
                if f.name in done:
                    continue
                for statement in f.read_text().split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (f.name, ts(utcnow())))
                applied.append(f.name)
        return applied

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        row = encode(row)
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", row)

    def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(sql, args).fetchone()
        return decode(dict(row)) if row else None

    def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return [decode(dict(r)) for r in conn.execute(sql, args).fetchall()]

    # ---- projects and datasets ----------------------------------------------------------------
    def add_project(self, project: Project) -> Project:
        with self._tx() as conn:
            self._insert(conn, "projects", project.model_dump())
        return project

    def get_project(self, project_id: str) -> Project:
        row = self._one("SELECT * FROM projects WHERE id = ?", project_id)
        if row is None:
            raise ProjectNotFound(project_id)
        return Project.model_validate(row)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        with self._connect() as conn:  # one snapshot: the page and its jobs
            conn.execute("BEGIN")
            projects = [decode(dict(r)) for r in conn.execute(
                "SELECT * FROM projects ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (limit, offset))]
            marks = ",".join("?" * len(projects))
            jobs = {r["project_id"]: r for r in (decode(dict(row)) for row in conn.execute(
                "SELECT * FROM training_jobs WHERE id IN (SELECT (SELECT j.id FROM training_jobs "
                "j WHERE j.project_id = p.id ORDER BY j.created_at DESC, j.rowid DESC LIMIT 1) "
                f"FROM projects p WHERE p.id IN ({marks}))", [p["id"] for p in projects]))}
            conn.execute("COMMIT")
        return [(Project.model_validate(p), TrainingJob.model_validate(jobs[p["id"]])
                 if p["id"] in jobs else None) for p in projects]

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        with self._tx() as conn:
            cur = conn.execute("UPDATE projects SET status = ?, updated_at = ? WHERE id = ?",
                               (status.value, ts(utcnow()), project_id))
            if cur.rowcount == 0:
                raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        with self._tx() as conn:
            self._insert(conn, "datasets", dataset.model_dump())
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        with self._tx() as conn:
            cur = conn.execute("UPDATE datasets SET num_classes = ? WHERE id = ?",
                               (num_classes, dataset_id))
            if cur.rowcount == 0:
                raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        row = self._one("SELECT * FROM datasets WHERE project_id = ? "
                        "ORDER BY created_at DESC, rowid DESC LIMIT 1", project_id)
        if row is None:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(row)

    # ---- jobs ---------------------------------------------------------------------------------
    def _claim(self, conn: sqlite3.Connection, job: TrainingJob,
               allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        row = conn.execute("SELECT status FROM projects WHERE id = ?", (job.project_id,)).fetchone()
        if row is None:
            raise ProjectNotFound(job.project_id)
        active = conn.execute(f"SELECT id FROM training_jobs WHERE project_id = ? AND {_ACTIVE}",
                              (job.project_id,)).fetchone()
        refusal = claim_refusal(job.project_id, row[0],
                                active[0] if active else None, allowed)
        if refusal is not None:
            raise refusal
        self._insert(conn, "training_jobs", job.model_dump())
        conn.execute("UPDATE projects SET status = ?, updated_at = ? WHERE id = ?",
                     (ProjectStatus.TRAINING.value, ts(utcnow()), job.project_id))
        return job

    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        with self._tx() as conn:
            return self._claim(conn, job, allowed)

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        with self._tx() as conn:
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
            return self._claim(conn, job, frozenset({ProjectStatus.PENDING_TRAINING}))

    def get_job(self, job_id: str) -> TrainingJob:
        row = self._one("SELECT * FROM training_jobs WHERE id = ?", job_id)
        if row is None:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(row)

    def latest_job(self, project_id: str) -> TrainingJob | None:
        row = self._one("SELECT * FROM training_jobs WHERE project_id = ? "
                        "ORDER BY created_at DESC, rowid DESC LIMIT 1", project_id)
        return TrainingJob.model_validate(row) if row else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        row = self._one("SELECT * FROM training_jobs WHERE idempotency_key = ?", key)
        return TrainingJob.model_validate(row) if row else None

    @staticmethod
    def _update_job(conn: sqlite3.Connection, job: TrainingJob) -> bool:
        row = encode(job.model_dump(include={"id", *JOB_SAVED_FIELDS}))
        cur = conn.execute(
            f"UPDATE training_jobs SET {_SAVE_SET} WHERE id = :id AND {_ACTIVE}", row)
        return cur.rowcount == 1

    def save_job(self, job: TrainingJob) -> bool:
        with self._tx() as conn:
            if self._update_job(conn, job):
                return True
            if conn.execute("SELECT 1 FROM training_jobs WHERE id = ?", (job.id,)).fetchone():
                return False
        raise JobNotFound(f"job {job.id}")

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        now = ts(utcnow())
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE training_jobs SET heartbeat_at = ?, updated_at = ?, "
                f"worker_id = COALESCE(?, worker_id) WHERE id = ? AND {_ACTIVE}",
                (now, now, worker_id, job_id))
            if cur.rowcount == 1:
                return True
            if conn.execute("SELECT 1 FROM training_jobs WHERE id = ?", (job_id,)).fetchone():
                return False
        raise JobNotFound(f"job {job_id}")

    def active_jobs(self) -> list[TrainingJob]:
        return [TrainingJob.model_validate(r)
                for r in self._all(f"SELECT * FROM training_jobs WHERE {_ACTIVE}")]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        with self._tx() as conn:
            if not self._update_job(conn, job):
                raise model_not_recorded(job.id)
            self._insert(conn, "models", model.model_dump())
            conn.execute("UPDATE projects SET status = ?, updated_at = ? WHERE id = ?",
                         (ProjectStatus.PENDING_EVALUATION.value, ts(utcnow()), job.project_id))

    def list_models(self, project_id: str) -> list[ModelRecord]:
        return [ModelRecord.model_validate(r) for r in self._all(
            "SELECT * FROM models WHERE project_id = ? ORDER BY created_at, rowid", project_id)]

    # ---- logs ---------------------------------------------------------------------------------
    def add_log(self, entry: LogEntry) -> None:
        with self._tx() as conn:
            self._insert(conn, "agent_logs", entry.model_dump(exclude={"id"}))

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        return [LogEntry.model_validate(r) for r in self._all(
            "SELECT * FROM agent_logs WHERE project_id = ? ORDER BY id DESC LIMIT ?",
            project_id, limit)]

    def ping(self) -> None:
        self._one("SELECT 1 AS ok")
