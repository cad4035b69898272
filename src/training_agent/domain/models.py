"""Domain objects: projects, datasets, jobs and their state machine, model records, log rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, model_validator

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


# A start is accepted from these statuses without "force".
STARTABLE = frozenset(
    {ProjectStatus.PENDING_TRAINING, ProjectStatus.TRAINING_FAILED, ProjectStatus.TRAINING_CANCELLED}
)


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


ACTIVE_STATES = frozenset(
    {JobState.QUEUED, JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
     JobState.UPLOADING, JobState.RECORDING}
)

# The steps a job walks through, in order; any active state may also end failed or cancelled.
STEP_ORDER = [JobState.QUEUED, JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
              JobState.UPLOADING, JobState.RECORDING, JobState.SUCCEEDED]


class Project(BaseModel):
    id: str = Field(default_factory=new_id)
    name: str
    status: ProjectStatus = ProjectStatus.PENDING_TRAINING
    task_type: str = "image_classification"
    training_config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Dataset(BaseModel):
    id: str = Field(default_factory=new_id)
    project_id: str
    gcs_url: str
    name: str = ""
    num_classes: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class ModelRecord(BaseModel):
    id: str = Field(default_factory=new_id)
    project_id: str
    name: str
    framework: str = "pytorch"
    gcs_url: str
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
