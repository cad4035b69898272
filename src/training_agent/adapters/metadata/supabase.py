"""Supabase MetadataRepo: the same store through PostgREST (supabase-py).

Plain reads and inserts go to the tables; the atomic operations are the SQL functions of the
migrations, called by RPC, so they are exactly the Postgres adapter's. Transient failures (5xx,
429, timeouts, dropped connections) are retried with backoff; each retry is safe because ids
are chosen by the client and the functions recognise a request they have already done.
"""

from __future__ import annotations

from typing import Any

import httpx

from training_agent.domain.errors import DatasetNotFound, JobNotFound, ProjectNotFound
from training_agent.domain.models import (
    Dataset,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    new_id,
    utcnow,
)
from training_agent.domain.ports import MetadataRepo

from .rows import ACTIVE_STATE_VALUES, is_uuid, projects_with_jobs, status_values
from .supabase_tables import SupabaseTables


class SupabaseProjects(MetadataRepo):
    """SupabaseMetadataRepo's projects and datasets."""

    _db: SupabaseTables

    def add_project(self, project: Project) -> Project:
        self._db.insert("projects", project.model_dump(mode="json"))
        return project

    def get_project(self, project_id: str) -> Project:
        rows = self._db.select("projects", limit=1, id=project_id) if is_uuid(project_id) else []
        if not rows:
            raise ProjectNotFound(project_id)
        return Project.model_validate(rows[0])

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        projects = self._db.run("select", "projects", lambda: self._db.table("projects").select(
            "*").order("created_at", desc=True).order("id", desc=True).limit(limit).offset(offset))
        ids = [p["id"] for p in projects]
        jobs: dict[str, dict[str, Any]] = {}
        if ids:  # every job of the page's projects, newest first: the first of each is its latest
            for row in self._db.run("select", "training_jobs", lambda: self._db.table(
                    "training_jobs").select("*").in_("project_id", ids).order(
                    "created_at", desc=True).order("id", desc=True)):
                jobs.setdefault(row["project_id"], row)
        return projects_with_jobs(projects, jobs)

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        changes = {"status": status.value, "updated_at": utcnow().isoformat()}
        if not (self._db.update("projects", changes, project_id) if is_uuid(project_id) else []):
            raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        self._db.insert("datasets", dataset.model_dump(mode="json"))
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        changes = {"num_classes": num_classes}
        if not (self._db.update("datasets", changes, dataset_id) if is_uuid(dataset_id) else []):
            raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        rows = self._db.select("datasets", desc=True, limit=1, project_id=project_id) if is_uuid(
            project_id) else []
        if not rows:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(rows[0])


class SupabaseMetadataRepo(SupabaseProjects):
    """The store through PostgREST: jobs, models and logs here; projects and datasets in
    SupabaseProjects; the client, retries and errors in SupabaseTables."""

    def __init__(self, url: str, key: str, *, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5, http: httpx.Client | None = None) -> None:
        self._db = SupabaseTables(url, key, timeout=timeout, attempts=attempts,
                                  backoff=backoff, http=http)
        self.url = self._db.url
        self.attempts = attempts
        self.backoff = backoff

    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        if not is_uuid(job.project_id):
            raise ProjectNotFound(job.project_id)
        rows = self._db.rpc("claim_training_job", "training_jobs",
                            {"p_job": job.model_dump(mode="json"),
                             "p_allowed": status_values(allowed)},
                            not_found=ProjectNotFound(job.project_id))
        return TrainingJob.model_validate(rows[0])

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        rows = self._db.rpc("claim_next_training_job", "training_jobs",
                            {"p_worker_id": worker_id, "p_job_id": new_id()})
        return TrainingJob.model_validate(rows[0]) if rows else None

    def get_job(self, job_id: str) -> TrainingJob:
        rows = self._db.select("training_jobs", limit=1, id=job_id) if is_uuid(job_id) else []
        if not rows:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(rows[0])

    def latest_job(self, project_id: str) -> TrainingJob | None:
        rows = self._db.select("training_jobs", desc=True, limit=1, project_id=project_id) if (
            is_uuid(project_id)) else []
        return TrainingJob.model_validate(rows[0]) if rows else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        rows = self._db.select("training_jobs", limit=1, idempotency_key=key)
        return TrainingJob.model_validate(rows[0]) if rows else None

    def save_job(self, job: TrainingJob) -> bool:
        return bool(self._db.rpc("save_training_job", "training_jobs",
                                 {"p_job": job.model_dump(mode="json")},
                                 not_found=JobNotFound(f"job {job.id}")))

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        if not is_uuid(job_id):
            raise JobNotFound(f"job {job_id}")
        return bool(self._db.rpc("touch_training_job", "training_jobs",
                                 {"p_job_id": job_id, "p_worker_id": worker_id},
                                 not_found=JobNotFound(f"job {job_id}")))

    def active_jobs(self) -> list[TrainingJob]:
        rows = self._db.run("select", "training_jobs", lambda: self._db.table(
            "training_jobs").select("*").in_("state", list(ACTIVE_STATE_VALUES)).order(
            "created_at"))
        return [TrainingJob.model_validate(r) for r in rows]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        self._db.rpc("record_trained_model", "models", {"p_model": model.model_dump(mode="json"),
                                                        "p_job": job.model_dump(mode="json")})

    def list_models(self, project_id: str) -> list[ModelRecord]:
        rows = self._db.select("models", project_id=project_id) if is_uuid(project_id) else []
        return [ModelRecord.model_validate(r) for r in rows]

    def add_log(self, entry: LogEntry) -> None:
        # the identity is the database's; request_id (unique) makes a retry after a lost
        # answer a duplicate that is refused, not a second row
        self._db.insert("agent_logs", {**entry.model_dump(mode="json", exclude={"id"}),
                                       "request_id": new_id()})

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        rows = self._db.select("agent_logs", order="id", desc=True, limit=limit,
                               project_id=project_id) if is_uuid(project_id) else []
        return [LogEntry.model_validate(r) for r in rows]

    def ping(self) -> None:
        self._db.run("select", "projects",
                     lambda: self._db.table("projects").select("id").limit(1))
