"""TrainingService: the one object the entrypoints use. It builds its parts, each with one job,
and hands each call to the part that does it: intake.py (projects, datasets), jobs.py (start,
cancel, fail, claim), workflow.py (running a job), workdirs.py (work folders), queries.py
(the read side); journal.py is the record keeping they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from . import archive
from .errors import JobNotFound
from .intake import Intake
from .jobs import (
    MAX_IDEMPOTENCY_KEY_CHARS,
    IdempotencyKeyReused,
    JobCommands,
    checked_idempotency_key,
    request_digest,
)
from .journal import Journal
from .models import Project, TrainingJob
from .ports import BlobStore, MetadataRepo, Notifier, Trainer
from .queries import ProjectQueries
from .recording import success_message
from .views import BackbonePageView, ProjectPageView, ProjectView, StatusView
from .workdirs import WorkFolders
from .workflow import Workflow, sha256_of


@dataclass
class TrainingService:
    repo: MetadataRepo
    blobs: BlobStore
    trainer: Trainer
    notifier: Notifier
    model_store_url: str
    work_root: Path
    limits: archive.IntakeLimits = field(default_factory=archive.IntakeLimits)
    # how long a worker keeps trying to record its job's failure while the store cannot write,
    # and its trained model while the store cannot be reached
    record_retry_seconds: float = 300.0

    def __post_init__(self) -> None:
        # the parts read the ports from this object at each use: a port replaced here counts
        journal = Journal(self)
        self.work = WorkFolders(self)
        self.intake = Intake(self, journal)
        self.jobs = JobCommands(self, journal, self.work)
        self.workflow = Workflow(self, journal, self.work)

    # ---- projects and datasets (intake.py) ---------------------------------------------------
    def create_project(
        self, name: str, dataset_url: str, config: dict[str, Any] | None = None
    ) -> Project:
        return self.intake.create_project(name, dataset_url, config)

    def create_project_from_file(
        self, name: str, archive_path: Path, config: dict[str, Any] | None = None
    ) -> tuple[Project, str]:
        return self.intake.create_project_from_file(name, archive_path, config)

    def store_dataset(self, archive_path: Path) -> str:
        return self.intake.store_dataset(archive_path)

    def check_dataset_file(self, path: Path, shown: str | None = None) -> list[str]:
        return self.intake.check_dataset_file(path, shown)

    # ---- jobs (jobs.py) ----------------------------------------------------------------------
    def start(
        self, project_id: str, overrides: dict[str, Any] | None = None, force: bool = False,
        worker_id: str | None = None, idempotency_key: str | None = None,
    ) -> TrainingJob:
        return self.jobs.start(project_id, overrides, force, worker_id, idempotency_key)

    def cancel(self, project_id: str) -> TrainingJob:
        return self.jobs.cancel(project_id)

    def fail_job(self, job_id: str, cause: str) -> TrainingJob:
        return self.jobs.fail_job(job_id, cause)

    def fail_stale(self, max_age: timedelta) -> list[TrainingJob]:
        return self.jobs.fail_stale(max_age)

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        return self.jobs.claim_next_pending(worker_id)

    def heartbeat(self, job_id: str, worker_id: str | None = None) -> bool:
        """Mark an active job alive (and owned by `worker_id`); False once it is final."""
        return self.repo.touch_job(job_id, worker_id)

    def flush_notifications(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for notifications still in flight (before a process
        that ran jobs exits)."""
        self.notifier.flush(timeout)

    # ---- running a job (workflow.py, workdirs.py) --------------------------------------------
    def run(
        self, job_id: str, on_progress: Callable[[TrainingJob], None] | None = None
    ) -> TrainingJob:
        return self.workflow.run(job_id, on_progress)

    def work_dir(self, job_id: str) -> Path:
        return self.work.work_dir(job_id)

    def remove_work(self, job_id: str) -> None:
        self.work.remove_work(job_id)

    def sweep_work(self) -> list[str]:
        return self.work.sweep_work()

    # ---- views (queries.py) ------------------------------------------------------------------
    @property
    def queries(self) -> ProjectQueries:
        """The read side: status, projects, reports, backbones."""
        return ProjectQueries(self.repo, self.blobs, self.trainer, self.work_root)

    def status(self, project_id: str, log_limit: int = 20) -> StatusView:
        return self.queries.status(project_id, log_limit)

    def list_projects(self, limit: int = 20, offset: int = 0) -> ProjectPageView:
        return self.queries.list_projects(limit, offset)

    def project(self, project_id: str) -> ProjectView:
        return self.queries.project(project_id)

    def dataset_report(self, project_id: str | None = None,
                       job_id: str | None = None) -> dict[str, Any]:
        return self.queries.dataset_report(project_id, job_id)

    def backbones(self) -> dict[str, list[str]]:
        return self.trainer.backbones()

    def find_backbones(self, text: str | None = None, provider: str | None = None,
                       pretrained: bool = False, limit: int | None = None,
                       offset: int = 0) -> BackbonePageView:
        return self.queries.find_backbones(text, provider, pretrained, limit, offset)

    def job(self, job_id: str) -> TrainingJob:
        return self.repo.get_job(job_id)

    def active_jobs(self) -> list[TrainingJob]:
        return self.repo.active_jobs()


__all__ = ["MAX_IDEMPOTENCY_KEY_CHARS", "IdempotencyKeyReused", "JobNotFound", "TrainingService",
           "checked_idempotency_key", "request_digest", "sha256_of", "success_message"]
