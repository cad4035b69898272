"""In-memory MetadataRepo: the fake for unit tests, with the same atomic rules as the SQL stores."""

from __future__ import annotations

import threading

from training_agent.domain.errors import Conflict, DatasetNotFound, JobNotFound, ProjectNotFound
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


def _saved(stored: TrainingJob, job: TrainingJob) -> TrainingJob:
    """`stored` with the fields a save writes taken from `job`."""
    saved = job.model_copy(deep=True)
    return stored.model_copy(update={
        **{f: getattr(saved, f) for f in JOB_SAVED_FIELDS},
        "started_at": saved.started_at or stored.started_at})


class InMemoryTables:
    """The rows, as models under one lock, and the failures a test asks for."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.datasets: list[Dataset] = []
        self.jobs: dict[str, TrainingJob] = {}
        self.models: list[ModelRecord] = []
        self.logs: list[LogEntry] = []
        self.fail_on: dict[str, Exception] = {}  # method name -> error, to test failure steps

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail_on:
            raise self.fail_on[name]


class InMemoryProjects(InMemoryTables, MetadataRepo):
    """InMemoryMetadataRepo's projects and datasets."""

    def add_project(self, project: Project) -> Project:
        with self._lock:
            self.projects[project.id] = project.model_copy(deep=True)
        return project

    def get_project(self, project_id: str) -> Project:
        with self._lock:
            if project_id not in self.projects:
                raise ProjectNotFound(project_id)
            return self.projects[project_id].model_copy(deep=True)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        with self._lock:
            page = sorted(self.projects.values(), key=lambda p: (p.created_at, p.id),
                          reverse=True)[offset:offset + limit]
            return [(p.model_copy(deep=True), self.latest_job(p.id)) for p in page]

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        self._maybe_fail("set_project_status")
        with self._lock:
            if project_id not in self.projects:
                raise ProjectNotFound(project_id)
            self.projects[project_id].status = status
            self.projects[project_id].updated_at = utcnow()

    def add_dataset(self, dataset: Dataset) -> Dataset:
        with self._lock:
            self.datasets.append(dataset.model_copy(deep=True))
        return dataset

    def latest_dataset(self, project_id: str) -> Dataset:
        with self._lock:
            rows = [d for d in self.datasets if d.project_id == project_id]
        if not rows:
            raise DatasetNotFound(project_id)
        return max(rows, key=lambda d: d.created_at).model_copy(deep=True)

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        with self._lock:
            for dataset in self.datasets:
                if dataset.id == dataset_id:
                    dataset.num_classes = num_classes
                    return
        raise DatasetNotFound(dataset_id)


class InMemoryMetadataRepo(InMemoryProjects):
    """The fake for unit tests: jobs, models and logs here; projects and datasets in
    InMemoryProjects; the rows in InMemoryTables."""

    def _active(self, project_id: str) -> TrainingJob | None:
        return next((j for j in self.jobs.values() if j.project_id == project_id and j.active),
                    None)

    def claim_job(
        self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None
    ) -> TrainingJob:
        with self._lock:
            project = self.get_project(job.project_id)
            active = self._active(job.project_id)
            refusal = claim_refusal(job.project_id, project.status,
                                    active.id if active is not None else None, allowed)
            if refusal is not None:
                raise refusal
            if job.idempotency_key is not None and any(
                    j.idempotency_key == job.idempotency_key for j in self.jobs.values()):
                raise Conflict(f"a job with Idempotency-Key {job.idempotency_key!r} exists")
            self.jobs[job.id] = job.model_copy(deep=True)
            self.set_project_status(job.project_id, ProjectStatus.TRAINING)
        return job

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        with self._lock:
            for project in sorted(self.projects.values(), key=lambda p: p.created_at):
                if (project.status is ProjectStatus.PENDING_TRAINING
                        and self._active(project.id) is None):
                    job = TrainingJob(project_id=project.id, config=project.training_config,
                                      worker_id=worker_id)
                    return self.claim_job(job, frozenset({ProjectStatus.PENDING_TRAINING}))
        return None

    def get_job(self, job_id: str) -> TrainingJob:
        with self._lock:
            if job_id not in self.jobs:
                raise JobNotFound(f"job {job_id}")
            return self.jobs[job_id].model_copy(deep=True)

    def latest_job(self, project_id: str) -> TrainingJob | None:
        with self._lock:
            rows = [j for j in self.jobs.values() if j.project_id == project_id]
        return max(rows, key=lambda j: j.created_at).model_copy(deep=True) if rows else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        with self._lock:
            job = next((j for j in self.jobs.values() if j.idempotency_key == key), None)
            return job.model_copy(deep=True) if job is not None else None

    def save_job(self, job: TrainingJob) -> bool:
        self._maybe_fail("save_job")
        with self._lock:
            stored = self.jobs.get(job.id)
            if stored is None:
                raise JobNotFound(f"job {job.id}")
            if not stored.active:
                return False
            self.jobs[job.id] = _saved(stored, job)
            return True

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        with self._lock:
            stored = self.jobs.get(job_id)
            if stored is None:
                raise JobNotFound(f"job {job_id}")
            if not stored.active:
                return False
            stored.beat()
            if worker_id is not None:
                stored.worker_id = worker_id
            return True

    def active_jobs(self) -> list[TrainingJob]:
        with self._lock:
            return [j.model_copy(deep=True) for j in self.jobs.values() if j.active]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        self._maybe_fail("record_model")
        with self._lock:
            stored = self.jobs.get(job.id)
            if stored is None or not stored.active:
                raise model_not_recorded(job.id)
            self.models.append(model.model_copy(deep=True))
            self.projects[job.project_id].status = ProjectStatus.PENDING_EVALUATION
            self.jobs[job.id] = _saved(stored, job)

    def list_models(self, project_id: str) -> list[ModelRecord]:
        with self._lock:
            return [m.model_copy(deep=True) for m in self.models if m.project_id == project_id]

    def add_log(self, entry: LogEntry) -> None:
        with self._lock:
            self.logs.append(entry.model_copy(update={"id": len(self.logs) + 1}))

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        with self._lock:
            rows = [e for e in self.logs if e.project_id == project_id]
        return list(reversed(rows))[:limit]
