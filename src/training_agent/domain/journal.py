"""The record keeping TrainingService's parts share: log rows, a job's saved steps, its
failure ended, logged and notified, and the retries that wait out a store outage."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import archive
from .errors import JobCancelled, MetadataError
from .models import JobState, LogEntry, ProjectStatus, TrainingJob
from .ports import BlobStore, MetadataRepo, Notification, Notifier, Trainer
from .urls import redact_text

_T = TypeVar("_T")


class Setup(Protocol):
    """The service's ports and settings (TrainingService's fields). Its parts read them at
    each use, so a port replaced on the service is the one they use."""

    repo: MetadataRepo
    blobs: BlobStore
    trainer: Trainer
    notifier: Notifier
    model_store_url: str
    work_root: Path
    limits: archive.IntakeLimits
    record_retry_seconds: float


def safely(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or None if it raises: a failing store must not hide the original failure."""
    try:
        return fn(*args)
    except Exception:
        return None


class Journal:
    """Writes what happens to projects and jobs: log rows, steps, failures, notifications."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    def log(self, project_id: str | None, level: str, message: str, **details: Any) -> None:
        safely(self.setup.repo.add_log,
               LogEntry(project_id=project_id, level=level, message=message, details=details))

    def notify(self, n: Notification) -> None:
        try:
            self.setup.notifier.notify(n)
        except Exception as exc:  # the user's chat being down never fails a job
            self.log(n.project_id, "warning", redact_text(f"notification failed: {exc}"))

    def patiently(self, call: Callable[[], _T], *, any_error: bool = False) -> _T:
        """`call()`, retried with backoff (0.2 s doubling to 5 s) for up to
        `record_retry_seconds` while the metadata store cannot be reached (an outage, not a
        refusal), or with `any_error` while it cannot write at all (a full disk)."""
        delay, deadline = 0.2, time.monotonic() + self.setup.record_retry_seconds
        while True:
            try:
                return call()
            except Exception as exc:
                outage = any_error or (isinstance(exc, MetadataError) and exc.unreachable)
                if not outage or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def step(self, job: TrainingJob, state: JobState, *, patient: bool = False) -> None:
        """Advance `job` to `state` and save it (JobCancelled once the stored job is final)."""
        job.advance(state)

        def save() -> bool:
            job.beat()
            return self.setup.repo.save_job(job)

        if not (self.patiently(save) if patient else save()):
            raise JobCancelled(job.id)
        self.log(job.project_id, "info", f"step: {state.value}", job_id=job.id)

    def end_failed(self, job: TrainingJob, cause: str, type_name: str,
                   project_name: str | None = None, *, patient: bool = False) -> None:
        """End `job` failed with `cause` (already redacted) at the step it is in; when this
        save is the one that ended it (not cancelled or failed meanwhile), set the project
        `training_failed`, log the failure and notify. `patient`: retry the save while the
        store cannot write (a worker recording its own job's failure), so a failure is
        recorded with its cause, not dropped."""
        step = job.state.value
        job.fail(cause)
        repo = self.setup.repo
        if not (self.patiently(lambda: repo.save_job(job), any_error=True) if patient
                else repo.save_job(job)):
            return
        safely(repo.set_project_status, job.project_id, ProjectStatus.TRAINING_FAILED)
        self.log(job.project_id, "error", f"training failed at step {step}: {cause}",
                 job_id=job.id, step=step, error_type=type_name)
        name = project_name or safely(lambda: repo.get_project(job.project_id).name)
        self.notify(Notification(
            project_id=job.project_id, project_name=name or job.project_id, ok=False,
            message=f"Training failed at step {step}: {cause}",
            details={"step": step, "cause": cause, "job_id": job.id},
        ))


class Part:
    """A part of TrainingService: its setup, and the journal the parts share."""

    def __init__(self, setup: Setup, journal: Journal) -> None:
        self.setup = setup
        self.journal = journal
