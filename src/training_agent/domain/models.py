"""Domain objects: projects, datasets, jobs and their state machine, model records, log rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import Conflict


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class ProjectStatus(str, Enum):
    PENDING_TRAINING = "pending_training"
    TRAINING = "training"
    PENDING_EVALUATION = "pending_evaluation"
    TRAINING_FAILED = "training_failed"
    TRAINING_CANCELLED = "training_cancelled"


# A start is accepted from these statuses without "force" (in the order a refusal names them).
STARTABLE_IN_ORDER = (
    ProjectStatus.PENDING_TRAINING, ProjectStatus.TRAINING_FAILED, ProjectStatus.TRAINING_CANCELLED
)
STARTABLE = frozenset(STARTABLE_IN_ORDER)


class JobState(str, Enum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PREPARING = "preparing"
    TRAINING = "training"
    UPLOADING = "uploading"
    RECORDING = "recording"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES


# The job state machine. A job walks through STEP_ORDER; any active state may also end failed
# or cancelled; a final state never changes (TrainingJob.advance). A project holds at most one
# active job: every store applies this set (the SQL migrations spell it out, and
# tests/unit/test_store_rules.py checks that they name exactly these states).
ACTIVE_STATES = frozenset(
    {JobState.QUEUED, JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
     JobState.UPLOADING, JobState.RECORDING}
)
STEP_ORDER = [JobState.QUEUED, JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
              JobState.UPLOADING, JobState.RECORDING, JobState.SUCCEEDED]

# What a save of a job writes (MetadataRepo.save_job and record_model): the fields that change
# while it runs. The rest (project, idempotency key and request digest, created_at, queued_at)
# is written once, by the claim. `started_at` is kept when the saved job has none.
JOB_SAVED_FIELDS = ("state", "config", "progress", "error", "worker_id", "heartbeat_at",
                    "started_at", "updated_at", "finished_at")


def claim_refusal(project_id: str, status: ProjectStatus | str, active_job_id: str | None,
                  allowed: frozenset[ProjectStatus] | None) -> Conflict | None:
    """The claim rule (MetadataRepo.claim_job): a project with an active job cannot be claimed,
    nor, when `allowed` is given, one whose status is outside it. None when the claim may go
    ahead. The SQL function claim_training_job words its refusals the same way (the contract
    tests compare them)."""
    if active_job_id is not None:
        return Conflict(f"project {project_id} already has an active job {active_job_id}")
    shown = status.value if isinstance(status, ProjectStatus) else status
    if allowed is not None and shown not in {s.value for s in allowed}:
        names = [s.value for s in STARTABLE_IN_ORDER]
        return Conflict(f"project {project_id} is {shown}; a start needs "
                        f"{', '.join(names[:-1])} or {names[-1]} (or force)")
    return None


def model_not_recorded(job_id: str) -> Conflict:
    """record_model's refusal: the job is no longer active (cancelled or failed meanwhile)."""
    return Conflict(f"job {job_id} is no longer active; model not recorded")


class Project(BaseModel):
    id: str = Field(default_factory=new_id)
    name: str
    status: ProjectStatus = ProjectStatus.PENDING_TRAINING
    task_type: str = "image_classification"
    training_config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


# The `gcs_url` column (the seed's name, fixed by the schema) holds any storage URL: file://,
# s3:// and gs:// alike. Inside the code it is `url`; the alias maps it at the edge, in rows
# read and written by the stores and in JSON.
_ROW_NAMES = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class Dataset(BaseModel):
    model_config = _ROW_NAMES

    id: str = Field(default_factory=new_id)
    project_id: str
    url: str = Field(alias="gcs_url")
    name: str = ""
    num_classes: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class ModelRecord(BaseModel):
    model_config = _ROW_NAMES

    id: str = Field(default_factory=new_id)
    project_id: str
    name: str
    framework: str = "pytorch"
    url: str = Field(alias="gcs_url")  # of model.pth
    accuracy: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class LogEntry(BaseModel):
    project_id: str | None
    level: str  # info | warning | error
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    agent: str = "training"
    id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class TrainingJob(BaseModel):
    id: str = Field(default_factory=new_id)
    project_id: str
    state: JobState = JobState.QUEUED
    config: dict[str, Any] = Field(default_factory=dict)
    progress: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    queued_at: datetime | None = None  # when the job was queued (its created_at, if not given)
    started_at: datetime | None = None  # when a worker began it; None while it waits
    # a start's Idempotency-Key, and the digest of the request it came with (project, config,
    # force): the same key again returns this job; with another request it is refused
    idempotency_key: str | None = None
    request_hash: str | None = None

    @model_validator(mode="after")
    def _queued_when_created(self) -> TrainingJob:
        if self.queued_at is None:  # a new job, or a row from before the column
            self.queued_at = self.created_at
        return self

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def begin(self) -> None:
        """A worker takes the job up (once: a job is begun by one worker)."""
        if self.started_at is None:
            self.started_at = utcnow()

    def advance(self, to: JobState) -> None:
        """Move to the next step; steps only go forward, and a final job never moves again."""
        if not self.active:
            raise Conflict(f"job {self.id} is {self.state.value} and cannot become {to.value}")
        if to in (JobState.FAILED, JobState.CANCELLED):
            self.finished_at = utcnow()
        elif STEP_ORDER.index(to) <= STEP_ORDER.index(self.state):
            raise Conflict(f"job {self.id} cannot go from {self.state.value} back to {to.value}")
        elif to is JobState.SUCCEEDED:
            if self.state is not JobState.RECORDING:
                raise Conflict(f"job {self.id} cannot succeed from {self.state.value}")
            self.finished_at = utcnow()
        self.state = to
        self.updated_at = utcnow()

    def fail(self, cause: str) -> None:
        self.advance(JobState.FAILED)
        self.error = cause

    def beat(self) -> None:
        self.heartbeat_at = utcnow()
        self.updated_at = self.heartbeat_at
