"""One job's run, its steps in a fixed order (docs/architecture.md, "A job's path, from a
request to an artifact"): download, prepare, train, upload, record."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from . import archive
from .config import TrainingConfig, resolve_config
from .disk import failure_cause, is_disk_full
from .errors import JobCancelled
from .journal import Journal, Part, Setup, safely
from .models import Dataset, JobState, Project, TrainingJob
from .ports import DatasetSplits, EpochProgress, TrainRequest
from .recording import Recorder
from .uploads import Uploads
from .urls import check_dataset_url, redact_text, redact_url
from .workdirs import WorkFolders

PROGRESS_SAVE_SECONDS = 2.0


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class JobProgress(Part):
    """The trainer's progress sink for one job: logs its messages, saves its progress (at
    each epoch's end, else at most every PROGRESS_SAVE_SECONDS) and raises JobCancelled once
    the stored job is final."""

    def __init__(self, setup: Setup, journal: Journal, job: TrainingJob,
                 on_progress: Callable[[TrainingJob], None] | None) -> None:
        super().__init__(setup, journal)
        self.job = job
        self.on_progress = on_progress
        self.last_save = 0.0

    def __call__(self, p: EpochProgress) -> None:
        job = self.job
        epoch_end = p.step is None
        if p.message:
            self.journal.log(job.project_id, "info", p.message, job_id=job.id)
        now = time.monotonic()
        if not epoch_end and now - self.last_save < PROGRESS_SAVE_SECONDS:
            return
        self.last_save = now
        kept = {k: v for k, v in job.progress.items()
                if not (epoch_end and k in ("step", "steps"))}
        job.progress = {**kept, **p.model_dump(exclude_none=True, exclude={"message"})}
        job.beat()
        if not self.setup.repo.save_job(job):
            raise JobCancelled(job.id)
        if epoch_end and p.message is None:
            self.journal.log(job.project_id, "info", f"epoch {p.epoch}/{p.epochs}", job_id=job.id,
                             **p.model_dump(exclude_none=True,
                                            exclude={"message", "step", "steps"}))
        if self.on_progress:
            self.on_progress(job)


class Workflow(Part):
    """Runs one claimed job from its dataset to its recorded model."""

    def __init__(self, setup: Setup, journal: Journal, work: WorkFolders) -> None:
        super().__init__(setup, journal)
        self.work = work
        self.uploads = Uploads(setup, journal)
        self.recorder = Recorder(setup, journal)

    def run(
        self, job_id: str, on_progress: Callable[[TrainingJob], None] | None = None
    ) -> TrainingJob:
        """Download, prepare, train, upload, record, set status, notify. Never raises for a job
        failure: the job ends failed (or cancelled) and says why."""
        job = self.setup.repo.get_job(job_id)
        project = self.setup.repo.get_project(job.project_id)
        work = self.work.work_dir(job.id)
        uploaded: list[str] = []  # artifact URLs no models row points at yet
        try:
            self._run_steps(job, project, work, on_progress, uploaded)
        except JobCancelled:
            self.journal.log(project.id, "warning", "training stopped: job cancelled",
                             job_id=job.id)
            self.uploads.discard(job, uploaded)
        except Exception as exc:  # every failure ends the job failed, named and logged
            # first: on a full disk, the extracted dataset's space lets the failure be recorded
            shutil.rmtree(work, ignore_errors=True)
            # other code's messages may hold a URL: no token reaches the error, logs or chat
            cause = redact_text(failure_cause(exc))
            type_name = "DiskFull" if is_disk_full(exc) else type(exc).__name__
            if job.active:
                self.journal.end_failed(job, cause, type_name, project.name, patient=True)
            self.uploads.discard(job, uploaded)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.setup.repo.get_job(job.id)

    def _run_steps(
        self, job: TrainingJob, project: Project, work: Path,
        on_progress: Callable[[TrainingJob], None] | None, uploaded: list[str],
    ) -> None:
        config = resolve_config(job.config)  # stored resolved; a bad row still names its key
        dataset = self.setup.repo.latest_dataset(project.id)
        job.begin()  # saved with the first step
        zip_path, digest, timings = self._download(job, dataset, work)
        splits = self._prepare(job, dataset, zip_path, config, timings)
        self.journal.step(job, JobState.TRAINING)
        request = TrainRequest(
            job_id=job.id, project_id=project.id, project_name=project.name, config=config,
            splits=splits, work_dir=work, out_dir=work / "out",
            checkpoint_dir=self.setup.work_root / "checkpoints" / project.id,
            dataset_url=redact_url(dataset.url), dataset_sha256=digest, timings=timings,
        )
        sink = JobProgress(self.setup, self.journal, job, on_progress)
        result = self.setup.trainer.train(request, sink)
        urls = self.uploads.upload(job, project, result, uploaded)
        self.recorder.record(job, project, result, urls, uploaded)

    def _download(self, job: TrainingJob, dataset: Dataset,
                  work: Path) -> tuple[Path, str, dict[str, float]]:
        """The `downloading` step: the zip into `work`, hashed; returns its path, its sha256
        and the step's timings."""
        self.journal.step(job, JobState.DOWNLOADING)  # the claim made the project `training`
        check_dataset_url(dataset.url)  # a row written before the rule (or by `watch`)
        self.setup.trainer.warm_up()  # its libraries load while the dataset comes
        zip_path = work / "dataset.zip"
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        size = self.setup.blobs.download(dataset.url, zip_path)
        t1 = time.monotonic()
        digest = sha256_of(zip_path)
        timings = {"download_seconds": round(t1 - t0, 3),
                   "hash_seconds": round(time.monotonic() - t1, 3)}
        self.journal.log(job.project_id, "info", "dataset downloaded", job_id=job.id,
                         bytes=size, sha256=digest, seconds=round(time.monotonic() - t0, 3),
                         url=redact_url(dataset.url))
        return zip_path, digest, timings

    def _prepare(self, job: TrainingJob, dataset: Dataset, zip_path: Path,
                 config: TrainingConfig, timings: dict[str, float]) -> DatasetSplits:
        """The `preparing` step: the zip checked and its images indexed in place (the
        trainer reads them from it; nothing is extracted), then split."""
        self.journal.step(job, JobState.PREPARING)
        t0 = time.monotonic()
        root = zip_path.parent / "data"  # the images' names: nothing is written there
        splits = archive.open_dataset(zip_path, root, config.val_fraction, config.seed,
                                      self.setup.limits)
        timings["index_seconds"] = round(time.monotonic() - t0, 3)
        safely(self.setup.repo.set_dataset_classes, dataset.id, len(splits.class_names))
        self.journal.log(job.project_id, "info", "dataset prepared", job_id=job.id,
                         classes=splits.class_names, counts=splits.counts(),
                         val_held_out=splits.val_held_out)
        return splits
