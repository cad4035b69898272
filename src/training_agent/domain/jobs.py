"""The commands on training jobs: start (once per Idempotency-Key), cancel, fail, the watch
claim, heartbeats."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import Conflict, InvalidInput
from .intake import checked_config
from .journal import Journal, Part, Setup
from .models import STARTABLE, JobState, ProjectStatus, TrainingJob
from .queries import SHOWN_ID_CHARS, checked_id
from .urls import check_dataset_url, redact_text
from .workdirs import WorkFolders

MAX_IDEMPOTENCY_KEY_CHARS = 255


class IdempotencyKeyReused(InvalidInput):
    """An Idempotency-Key sent again with a different request (another project, config or
    force): refused (422, as the IETF Idempotency-Key draft says), never a second job."""


def checked_idempotency_key(key: str) -> str:
    """A key is 1 to 255 printable ASCII characters (a UUID is the usual choice)."""
    if not key or not key.strip():
        raise InvalidInput("Idempotency-Key is empty; send a unique value per start, such as a "
                           "UUID")
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidInput(f"Idempotency-Key is {len(key)} characters; at most "
                           f"{MAX_IDEMPOTENCY_KEY_CHARS} are allowed")
    if not all(" " <= c <= "~" for c in key):
        raise InvalidInput("Idempotency-Key must be printable ASCII")
    return key


def request_digest(project_id: str, overrides: dict[str, Any] | None, force: bool) -> str:
    """What makes two starts the same request: project, config overrides, force."""
    body = json.dumps({"project_id": project_id, "config": overrides or {}, "force": force},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class JobCommands(Part):
    """Starts, cancels and fails jobs; claims the next pending project for `watch`."""

    def __init__(self, setup: Setup, journal: Journal, work: WorkFolders) -> None:
        super().__init__(setup, journal)
        self.work = work

    def start(
        self, project_id: str, overrides: dict[str, Any] | None = None, force: bool = False,
        worker_id: str | None = None, idempotency_key: str | None = None,
    ) -> TrainingJob:
        """Validate and claim: a queued job, or NotFound / InvalidConfig / Conflict.

        With an `idempotency_key`, a start that was already made with that key (the same
        project, config and force) returns its job, whatever state it is in now, instead of
        starting another or answering Conflict; the key with another request is
        IdempotencyKeyReused."""
        project_id = checked_id(project_id)
        key = None if idempotency_key is None else checked_idempotency_key(idempotency_key)
        digest = request_digest(project_id, overrides, force) if key is not None else None
        if key is not None and (earlier := self._replayed(key, digest)) is not None:
            return earlier
        repo = self.setup.repo
        project = repo.get_project(project_id)
        check_dataset_url(repo.latest_dataset(project_id).url)
        config = checked_config(self.setup.trainer, project.training_config, overrides)
        job = TrainingJob(project_id=project_id, config=config.model_dump(), worker_id=worker_id,
                          idempotency_key=key, request_hash=digest)
        try:
            job = repo.claim_job(job, None if force else STARTABLE)
        except Conflict:
            # a concurrent start with the same key won the claim: that is this request's job
            if key is not None and (earlier := self._replayed(key, digest)) is not None:
                return earlier
            raise
        self.journal.log(project_id, "info", "training job queued", job_id=job.id, force=force,
                         **({"idempotency_key": key} if key is not None else {}))
        return job

    def _replayed(self, key: str, digest: str | None) -> TrainingJob | None:
        job = self.setup.repo.job_for_idempotency_key(key)
        if job is None:
            return None
        if job.request_hash != digest:
            shown = key if len(key) <= SHOWN_ID_CHARS else f"{key[:SHOWN_ID_CHARS]}…"
            raise IdempotencyKeyReused(
                f"Idempotency-Key {shown!r} was already used for a different start (job "
                f"{job.id} of project {job.project_id}); a retry must send the same "
                "project_id, config and force, and a new start needs a new key")
        return job

    def cancel(self, project_id: str) -> TrainingJob:
        project_id = checked_id(project_id)
        repo = self.setup.repo
        repo.get_project(project_id)
        job = repo.latest_job(project_id)
        if job is None or not job.active:
            raise Conflict(f"project {project_id} has no active training job to cancel")
        job.advance(JobState.CANCELLED)
        job.error = "cancelled by request"
        if not repo.save_job(job):
            raise Conflict(f"job {job.id} finished before it could be cancelled")
        repo.set_project_status(project_id, ProjectStatus.TRAINING_CANCELLED)
        self.journal.log(project_id, "warning", "training cancelled", job_id=job.id)
        return job

    def fail_job(self, job_id: str, cause: str) -> TrainingJob:
        """End an active job from outside (its worker died, its heartbeat went stale)."""
        job = self.setup.repo.get_job(job_id)
        if not job.active:
            return job
        self.journal.end_failed(job, redact_text(cause), "WorkerLost")
        return job

    def fail_stale(self, max_age: timedelta) -> list[TrainingJob]:
        """Fail the active jobs whose heartbeat is older than `max_age` (their agent or worker
        died), then remove the work folders of jobs no longer active."""
        cutoff = datetime.now(timezone.utc) - max_age
        stale = [j for j in self.setup.repo.active_jobs()
                 if (j.heartbeat_at or j.created_at) < cutoff]
        failed = [self.fail_job(j.id, f"heartbeat stale since {j.heartbeat_at or j.created_at} "
                                "(the agent stopped while the job ran)") for j in stale]
        self.work.sweep_work()
        return failed

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        """The watch trigger: atomically claim the oldest `pending_training` project.

        The claim copies the project's raw `training_config`; it is resolved and validated here,
        as `start` does, and the resolved config is stored on the job. A project whose config
        is invalid ends its job `failed` (the error names the key) and the next one is tried."""
        repo = self.setup.repo
        while True:
            job = repo.claim_next_pending(worker_id)
            if job is None:
                return None
            self.journal.log(job.project_id, "info", "training job claimed", job_id=job.id,
                             worker_id=worker_id)
            try:
                config = checked_config(self.setup.trainer, job.config)
            except InvalidInput as exc:
                self.journal.end_failed(job, redact_text(f"{type(exc).__name__}: {exc}"),
                                        type(exc).__name__)
                continue
            job.config = config.model_dump()
            if repo.save_job(job):
                return job
            # cancelled between the claim and now: nothing to run; look for another project
