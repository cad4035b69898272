"""The four ports: what the service needs from the outside world, and nothing more."""

from __future__ import annotations

import abc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .config import TrainingConfig
from .errors import StorageError
from .models import Dataset, JobState, LogEntry, ModelRecord, Project, ProjectStatus, TrainingJob


class MetadataRepo(abc.ABC):
    """Projects, datasets, jobs, models and logs. Claims are atomic in the store."""

    @abc.abstractmethod
    def add_project(self, project: Project) -> Project: ...

    @abc.abstractmethod
    def get_project(self, project_id: str) -> Project:
        """Raises ProjectNotFound."""

    @abc.abstractmethod
    def set_project_status(self, project_id: str, status: ProjectStatus) -> None: ...

    @abc.abstractmethod
    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        """A page of projects, newest first (created_at, then id, descending), each with its
        latest job (None before the first start)."""

    @abc.abstractmethod
    def add_dataset(self, dataset: Dataset) -> Dataset: ...

    @abc.abstractmethod
    def latest_dataset(self, project_id: str) -> Dataset:
        """The newest dataset row of the project; raises DatasetNotFound."""

    @abc.abstractmethod
    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        """Record `datasets.num_classes` once intake has found the classes; raises
        DatasetNotFound."""

    @abc.abstractmethod
    def claim_job(
        self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None
    ) -> TrainingJob:
        """Atomically: refuse (Conflict) if the project has an active job or, when `allowed` is
        given, a status outside it; else insert the job and set the project `training`."""

    @abc.abstractmethod
    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        """Atomically claim one `pending_training` project with no active job (oldest first),
        creating its queued job owned by `worker_id`; None when there is none."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> TrainingJob:
        """Raises JobNotFound."""

    @abc.abstractmethod
    def latest_job(self, project_id: str) -> TrainingJob | None: ...

    @abc.abstractmethod
    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        """The job a start with this Idempotency-Key created (keys are unique in the store:
        a second job with the same key is refused as a Conflict), or None."""

    @abc.abstractmethod
    def save_job(self, job: TrainingJob) -> bool:
        """Writes the fields `JOB_SAVED_FIELDS` names (models.py), only while the stored job is
        still active; returns False (writing nothing) once it is final: final is final."""

    @abc.abstractmethod
    def active_jobs(self) -> list[TrainingJob]: ...

    @abc.abstractmethod
    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        """Heartbeat: set `heartbeat_at` to now (and the owner, when given) while the job is
        active, touching nothing else (one conditional update, so a concurrent progress save is
        never lost); False once it is final; JobNotFound when there is no such job."""

    @abc.abstractmethod
    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        """In one transaction: insert the models row, set the project `pending_evaluation`, save
        the (succeeded) job. Raises Conflict, writing nothing, if the job is no longer active."""

    @abc.abstractmethod
    def list_models(self, project_id: str) -> list[ModelRecord]: ...

    @abc.abstractmethod
    def add_log(self, entry: LogEntry) -> None: ...

    @abc.abstractmethod
    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        """Newest first."""

    def ping(self) -> None:
        """Raises when the store cannot be reached (used by /health)."""


class BlobStore(abc.ABC):
    """Object storage addressed by URL (`file://`, `gs://`, `s3://`, ...)."""

    @abc.abstractmethod
    def download(self, url: str, dest: Path) -> int:
        """Stream the blob to `dest`; returns its size. Raises BlobNotFound,
        StoragePermissionDenied or StorageError."""

    @abc.abstractmethod
    def upload(self, src: Path, url: str) -> str:
        """Store the file at `url`; returns the URL."""

    def size(self, url: str) -> int:
        """The blob's size from its metadata alone (one quick HEAD, nothing read), to check
        that it exists; raises BlobNotFound, StoragePermissionDenied or StorageError."""
        raise StorageError(f"{type(self).__name__} cannot look a blob up without reading it")

    def local_path(self, url: str) -> Path | None:
        """The file a `file://` blob is on this machine (checks read it in place); None for
        a remote store."""
        return None

    def delete(self, url: str) -> None:
        """Remove the blob; one that is already gone is no error. Raises StorageError."""
        raise StorageError(f"{type(self).__name__} cannot delete blobs")

    def ping(self, url: str | None = None) -> None:
        """Raises when the store cannot be reached; given a store URL (the model store's,
        `gs://bucket/prefix`), when its bucket cannot be reached with these credentials."""


class DatasetSplits(BaseModel):
    """What intake found: the class names and the image files of each split.

    Each image is named by its path inside the dataset folder, `root/<split>/<class>/<file>`.
    With `archive`, the dataset was not extracted: that path's bytes are the member
    `members[<split>/<class>/<file>]` of the zip `archive` (the trainer reads it in place)."""

    root: Path
    class_names: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    test: list[tuple[Path, int]] = Field(default_factory=list)
    val_held_out: bool = False  # True when val/ was missing and carved out of train/
    ignored: list[str] = Field(default_factory=list)
    archive: Path | None = None
    members: dict[str, str] = Field(default_factory=dict)  # path under root -> member name

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


class EpochProgress(BaseModel):
    epoch: int
    epochs: int
    train_loss: float | None = None
    val_accuracy: float | None = None
    images_per_second: float | None = None
    eta_seconds: float | None = None
    step: int | None = None  # batches done in this epoch, for live bars
    steps: int | None = None
    message: str | None = None  # a note the service logs (resume, skipped images, ...)


ProgressSink = Callable[[EpochProgress], None]
"""Called by the trainer during training; raises JobCancelled when the job must stop."""


class TrainRequest(BaseModel):
    job_id: str
    project_id: str
    project_name: str
    config: TrainingConfig
    splits: DatasetSplits
    work_dir: Path  # scratch space of this job
    checkpoint_dir: Path  # survives the job: resume reads it
    out_dir: Path  # artifacts go here
    dataset_url: str
    dataset_sha256: str
    extra_manifest: dict[str, Any] = Field(default_factory=dict)
    # the job's steps before training (download, hash, extract), seconds: the manifest's timings
    timings: dict[str, float] = Field(default_factory=dict)


class TrainResult(BaseModel):
    accuracy: float  # test accuracy, or validation accuracy when there is no test split
    metrics: dict[str, Any]
    epochs_run: int
    backbone: str
    trainer: str
    class_names: list[str]
    artifacts: dict[str, Path]  # file name -> local path; must hold model.pth and manifest.json
    weights_sha256: str


class BackboneInfo(BaseModel):
    provider: str = Field(description="the trainer plugin: `config.trainer`")
    name: str = Field(description="`config.backbone`")
    pretrained: bool | None = Field(
        None, description="whether published pretrained weights exist (null: the plugin does "
                          "not say)")


class Trainer(abc.ABC):
    @abc.abstractmethod
    def train(self, request: TrainRequest, progress: ProgressSink) -> TrainResult:
        """Train and write artifacts into request.out_dir. Raises TrainingError, DatasetInvalid
        or JobCancelled."""

    @abc.abstractmethod
    def backbones(self) -> dict[str, list[str]]:
        """Plugin name -> backbone names it offers."""

    def check_config(self, config: TrainingConfig) -> None:
        """Raises InvalidConfig for an unknown trainer or backbone, before a job is queued."""

    def warm_up(self) -> None:
        """Begin loading what training needs (its libraries) in the background, while the job
        downloads and extracts its dataset; `train` waits for it. Optional."""

    def backbone_catalog(self) -> list[BackboneInfo]:
        """Every backbone, with whether it has pretrained weights when the plugin says."""
        return [BackboneInfo(provider=plugin, name=name, pretrained=None)
                for plugin, names in self.backbones().items() for name in names]


class Notification(BaseModel):
    project_id: str
    project_name: str
    ok: bool
    message: str
    details: dict[str, Any] = Field(default_factory=dict)  # a success has `verdict`
    at: datetime | None = None

    @property
    def mark(self) -> str:
        """❌ failed; ⚠️ succeeded with a `weak` or `chance` verdict; ✅ otherwise."""
        if not self.ok:
            return "❌"
        verdict = self.details.get("verdict")
        level = verdict.get("level") if isinstance(verdict, dict) else None
        return "⚠️" if level in ("weak", "chance") else "✅"

    @property
    def headline(self) -> str:
        """The one line a chat or a log shows: mark, project, message."""
        return f"{self.mark} [{self.project_name}] {self.message}"


class Notifier(abc.ABC):
    @abc.abstractmethod
    def notify(self, notification: Notification) -> None:
        """Tell the user; must not raise for delivery problems that should not fail a job."""

    def flush(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for deliveries still in flight (before a process exits)."""


__all__ = [
    "BackboneInfo", "BlobStore", "DatasetSplits", "EpochProgress", "JobState", "MetadataRepo", "Notification",
    "Notifier", "ProgressSink", "TrainRequest", "TrainResult", "Trainer",
]
