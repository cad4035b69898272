"""TrainingService: runs a job through the ports in a fixed order (docs/architecture.md, "A job's
path, from a request to an artifact")."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import archive
from .config import TrainingConfig, resolve_config
from .disk import failure_cause, is_disk_full
from .errors import (
    BlobNotFound,
    Conflict,
    DatasetInvalid,
    InvalidInput,
    JobCancelled,
    JobNotFound,
    MetadataError,
    TrainingAgentError,
)
from .models import (
    STARTABLE,
    Dataset,
    JobState,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    new_id,
)
from .ports import (
    BlobStore,
    EpochProgress,
    MetadataRepo,
    Notification,
    Notifier,
    Trainer,
    TrainRequest,
    TrainResult,
)
from .queries import SHOWN_ID_CHARS, ProjectQueries, checked_id
from .urls import check_dataset_url, redact_text, redact_url
from .verdict import job_metrics, judge, summarize
from .views import (
    BackbonePageView,
    ProjectPageView,
    ProjectView,
    StatusView,
)

PROGRESS_SAVE_SECONDS = 2.0
REPORT_NAMES = ("dataset_report.json", "report.json", "report.html")  # beside the model


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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def success_message(project_name: str, accuracy: float, verdict: dict[str, str],
                    summary: str | None = None) -> str:
    """The success notification's words, by verdict: a weak or chance-level model is still
    saved and recorded, and the message says so plainly. With the report's `summary` (the
    status view's), that is what the message says about the model and its data."""
    if verdict["level"] == "chance":
        return (f"Training finished, but the model for {project_name} is not clearly better "
                f"than chance. {summary or verdict['text']} The model was saved and recorded "
                "anyway.")
    if verdict["level"] == "weak":
        return (f"Training complete: {project_name} reached accuracy {accuracy:.4f}, a weak "
                f"model. {summary or verdict['text']} Model uploaded; evaluation can now begin.")
    return (f"Training complete: {project_name} reached accuracy {accuracy:.4f}. "
            + (f"{summary} " if summary else "") + "Model uploaded; evaluation can now begin.")


_T = TypeVar("_T")


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

    # ---- commands -------------------------------------------------------------------------
    def create_project(
        self, name: str, dataset_url: str, config: dict[str, Any] | None = None
    ) -> Project:
        """Check what can be checked at once (the URL, the config, that the dataset exists;
        for a `file://` zip also its central directory), then write the project and dataset
        rows. A store that cannot answer here (no credentials on this machine, unreachable)
        is no refusal: the check is noted in the project's log and the job makes it."""
        check_dataset_url(dataset_url)
        # stored as validated (strict types; 1 for a float knob is 1.0), only the keys given
        validated = self._checked_config(config or {}).model_dump(mode="json", exclude_unset=True)
        unchecked = self._check_dataset(dataset_url)
        project = self.repo.add_project(Project(name=name, training_config=validated))
        self.repo.add_dataset(Dataset(project_id=project.id, gcs_url=dataset_url, name=name))
        self._log(project.id, "info", "project created", dataset_url=redact_url(dataset_url))
        if unchecked:
            self._log(project.id, "warning", f"dataset not checked at create: {unchecked}")
        return project

    def create_project_from_file(
        self, name: str, archive_path: Path, config: dict[str, Any] | None = None
    ) -> tuple[Project, str]:
        """`project create` with a local zip: config and zip checked before the zip is copied
        into the model store. Returns the project and the dataset's URL."""
        self._checked_config(config or {})
        url = self.store_dataset(archive_path)
        try:
            return self.create_project(name, url, config), url
        except BaseException:
            self._safely(self.blobs.delete, url)  # a refused create leaves no copy behind
            raise

    def store_dataset(self, archive_path: Path) -> str:
        """Copy a local dataset zip into the model store, once its central directory passed
        the intake checks; returns its URL."""
        self.check_dataset_file(archive_path)
        # '?' and '#' would read as a query or fragment (refused on these schemes): escaped
        name = archive_path.name.replace("?", "%3F").replace("#", "%23")
        url = f"{self.model_store_url.rstrip('/')}/datasets/{new_id()}/{name}"
        return self.blobs.upload(archive_path, url)

    def check_dataset_file(self, path: Path, shown: str | None = None) -> list[str]:
        """A local dataset zip: exists, is a zip, passes every intake check that needs no
        inflating (archive.inspect_archive). Returns its class names; InvalidInput otherwise."""
        shown = shown or str(path)
        if path.is_dir():
            raise InvalidInput(f"dataset {shown} is a directory, not a zip: zip it (train/"
                               "<class>/<image> at its root or inside one top folder) and give "
                               "the zip")
        if not path.exists():
            raise InvalidInput(f"dataset {shown} does not exist")
        if not path.is_file() or not zipfile.is_zipfile(path):
            raise InvalidInput(f"dataset file {shown} is not a zip archive")
        try:
            return archive.inspect_archive(path, self.limits)
        except DatasetInvalid as exc:
            raise InvalidInput(f"dataset {shown} refused: {exc}") from None

    def _check_dataset(self, url: str) -> str | None:
        """Refuses a dataset that is surely unusable; returns why it could not be checked,
        or None when it was."""
        shown = redact_url(url)
        try:
            path = self.blobs.local_path(url)
            if path is None:
                self.blobs.size(url)  # a HEAD: it exists
        except BlobNotFound:
            raise InvalidInput(f"dataset {shown} does not exist") from None
        except TrainingAgentError as exc:  # no credentials here, store down, extra missing
            return redact_text(f"{type(exc).__name__}: {exc}")
        if path is not None:
            self.check_dataset_file(path, shown)
        return None

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
        project = self.repo.get_project(project_id)
        check_dataset_url(self.repo.latest_dataset(project_id).url)
        config = self._checked_config(project.training_config, overrides)
        job = TrainingJob(project_id=project_id, config=config.model_dump(), worker_id=worker_id,
                          idempotency_key=key, request_hash=digest)
        try:
            job = self.repo.claim_job(job, None if force else STARTABLE)
        except Conflict:
            # a concurrent start with the same key won the claim: that is this request's job
            if key is not None and (earlier := self._replayed(key, digest)) is not None:
                return earlier
            raise
        self._log(project_id, "info", "training job queued", job_id=job.id, force=force,
                  **({"idempotency_key": key} if key is not None else {}))
        return job

    def _replayed(self, key: str, digest: str | None) -> TrainingJob | None:
        job = self.repo.job_for_idempotency_key(key)
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
        self.repo.get_project(project_id)
        job = self.repo.latest_job(project_id)
        if job is None or not job.active:
            raise Conflict(f"project {project_id} has no active training job to cancel")
        job.advance(JobState.CANCELLED)
        job.error = "cancelled by request"
        if not self.repo.save_job(job):
            raise Conflict(f"job {job.id} finished before it could be cancelled")
        self.repo.set_project_status(project_id, ProjectStatus.TRAINING_CANCELLED)
        self._log(project_id, "warning", "training cancelled", job_id=job.id)
        return job

    def fail_job(self, job_id: str, cause: str) -> TrainingJob:
        """End an active job from outside (its worker died, its heartbeat went stale)."""
        job = self.repo.get_job(job_id)
        if not job.active:
            return job
        self._end_failed(job, redact_text(cause), "WorkerLost")
        return job

    def fail_stale(self, max_age: timedelta) -> list[TrainingJob]:
        """Fail the active jobs whose heartbeat is older than `max_age` (their agent or worker
        died), then remove the work folders of jobs no longer active."""
        cutoff = datetime.now(timezone.utc) - max_age
        stale = [j for j in self.repo.active_jobs() if (j.heartbeat_at or j.created_at) < cutoff]
        failed = [self.fail_job(j.id, f"heartbeat stale since {j.heartbeat_at or j.created_at} "
                                "(the agent stopped while the job ran)") for j in stale]
        self.sweep_work()
        return failed

    # ---- the workflow -----------------------------------------------------------------------
    def run(
        self, job_id: str, on_progress: Callable[[TrainingJob], None] | None = None
    ) -> TrainingJob:
        """Download, prepare, train, upload, record, set status, notify. Never raises for a job
        failure: the job ends failed (or cancelled) and says why."""
        job = self.repo.get_job(job_id)
        project = self.repo.get_project(job.project_id)
        work = self.work_dir(job.id)
        uploaded: list[str] = []  # artifact URLs no models row points at yet
        try:
            self._run_steps(job, project, work, on_progress, uploaded)
        except JobCancelled:
            self._log(project.id, "warning", "training stopped: job cancelled", job_id=job.id)
            self._discard_uploads(job, uploaded)
        except Exception as exc:  # every failure ends the job failed, named and logged
            # first: on a full disk, the extracted dataset's space lets the failure be recorded
            shutil.rmtree(work, ignore_errors=True)
            # other code's messages may hold a URL: no token reaches the error, logs or chat
            cause = redact_text(failure_cause(exc))
            type_name = "DiskFull" if is_disk_full(exc) else type(exc).__name__
            if job.active:
                self._end_failed(job, cause, type_name, project.name, patient=True)
            self._discard_uploads(job, uploaded)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.repo.get_job(job.id)

    def work_dir(self, job_id: str) -> Path:
        """The job's scratch folder: the downloaded zip and the extracted dataset."""
        return self.work_root / "jobs" / job_id

    def remove_work(self, job_id: str) -> None:
        """Remove a job's work folder: what a worker killed before its own cleanup (SIGKILL,
        out of memory) leaves behind."""
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)

    def sweep_work(self) -> list[str]:
        """Remove the work folders of jobs that are not active (their workers died without
        cleaning up); returns those jobs' ids. The folders are listed before the active jobs
        are read, so a job claimed in between (active, its folder still to come) is safe."""
        root = self.work_root / "jobs"
        folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        if not folders:
            return []
        active = {j.id for j in self.repo.active_jobs()}
        gone = [p for p in folders if p.name not in active]
        for folder in gone:
            shutil.rmtree(folder, ignore_errors=True)
        return [p.name for p in gone]

    def _run_steps(
        self, job: TrainingJob, project: Project, work: Path,
        on_progress: Callable[[TrainingJob], None] | None, uploaded: list[str],
    ) -> None:
        config = resolve_config(job.config)  # stored resolved; a bad row still names its key
        dataset = self.repo.latest_dataset(project.id)
        job.begin()  # saved with the first step
        self._step(job, JobState.DOWNLOADING)  # the claim made the project `training`
        check_dataset_url(dataset.url)  # a row written before the rule (or by `watch`)
        self.trainer.warm_up()  # its libraries load while the dataset comes
        zip_path = work / "dataset.zip"
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        size = self.blobs.download(dataset.url, zip_path)
        t1 = time.monotonic()
        digest = sha256_of(zip_path)
        timings = {"download_seconds": round(t1 - t0, 3),
                   "hash_seconds": round(time.monotonic() - t1, 3)}
        self._log(project.id, "info", "dataset downloaded", job_id=job.id, bytes=size,
                  sha256=digest, seconds=round(time.monotonic() - t0, 3),
                  url=redact_url(dataset.url))

        self._step(job, JobState.PREPARING)
        data_dir = work / "data"
        t0 = time.monotonic()
        found = archive.extract_dataset(zip_path, data_dir, self.limits)
        zip_path.unlink()
        splits = archive.build_splits(data_dir, found, config.val_fraction, config.seed)
        timings["extract_seconds"] = round(time.monotonic() - t0, 3)
        self._safely(self.repo.set_dataset_classes, dataset.id, len(splits.class_names))
        self._log(project.id, "info", "dataset prepared", job_id=job.id,
                  classes=splits.class_names, counts=splits.counts(),
                  val_held_out=splits.val_held_out)

        self._step(job, JobState.TRAINING)
        request = TrainRequest(
            job_id=job.id, project_id=project.id, project_name=project.name, config=config,
            splits=splits, work_dir=work, out_dir=work / "out",
            checkpoint_dir=self.work_root / "checkpoints" / project.id,
            dataset_url=redact_url(dataset.url), dataset_sha256=digest, timings=timings,
        )
        result = self.trainer.train(request, self._progress_sink(job, on_progress))
        if not result.primary:
            return  # a non-zero distributed rank: rank 0 uploads and records

        self._step(job, JobState.UPLOADING)
        base = f"{self.model_store_url.rstrip('/')}/models/{project.id}/{job.id}"
        urls: dict[str, str] = {}
        for name, path in sorted(result.artifacts.items()):
            uploaded.append(f"{base}/{name}")  # before the call: a failed upload may leave part
            urls[name] = self.blobs.upload(path, f"{base}/{name}")
        self._log(project.id, "info", "artifacts uploaded", job_id=job.id,
                  artifacts=[redact_url(u) for u in urls.values()])

        # the artifacts are uploaded: from here an outage is waited out, not a failure
        self._step(job, JobState.RECORDING, patient=True)
        metrics = self._job_metrics(result)
        model = self._model_record(project, job, result, urls, metrics)
        succeeded = job.model_copy(deep=True)  # `job` stays active if recording fails
        succeeded.advance(JobState.SUCCEEDED)
        succeeded.progress["model_url"] = model.url
        succeeded.progress["metrics"] = metrics  # progress is stored as JSON by every store
        reports = {n: urls[n] for n in REPORT_NAMES if n in urls}
        if reports:
            succeeded.progress["reports"] = reports
        self._record_model(model, succeeded)
        uploaded.clear()  # the model now: kept whatever happens next
        verdict = metrics["verdict"]
        model_url = redact_url(model.url)
        done = "training complete; status pending_evaluation"
        # with the trainer's report, the last row and the message carry the whole summary
        summary = summarize(metrics) if "findings" in metrics else None
        said = summary or verdict["text"]
        self._log(project.id, "info" if verdict["level"] == "ok" else "warning",
                  (f"{done} — {summary}" if summary else done) if verdict["level"] == "ok"
                  else f"{done} — ⚠️ {said}",
                  job_id=job.id, accuracy=result.accuracy, model_url=model_url, verdict=verdict,
                  **({"summary": summary, "reports": [redact_url(u) for u in reports.values()]}
                     if summary else {}))
        self._notify(Notification(
            project_id=project.id, project_name=project.name, ok=True,
            message=success_message(project.name, result.accuracy, verdict, summary),
            details={"accuracy": result.accuracy, "model_url": model_url, "job_id": job.id,
                     "verdict": verdict,
                     **({"summary": summary,
                         "report_url": redact_url(reports["report.html"])}
                        if summary and "report.html" in reports else {})},
        ))

    # ---- queries ----------------------------------------------------------------------------
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

    # ---- for runners (HTTP, watch, MCP) ------------------------------------------------------
    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        """The watch trigger: atomically claim the oldest `pending_training` project.

        The claim copies the project's raw `training_config`; it is resolved and validated here,
        as `start` does, and the resolved config is stored on the job. A project whose config
        is invalid ends its job `failed` (the error names the key) and the next one is tried."""
        while True:
            job = self.repo.claim_next_pending(worker_id)
            if job is None:
                return None
            self._log(job.project_id, "info", "training job claimed", job_id=job.id,
                      worker_id=worker_id)
            try:
                config = self._checked_config(job.config)
            except InvalidInput as exc:
                self._end_failed(job, redact_text(f"{type(exc).__name__}: {exc}"),
                                 type(exc).__name__)
                continue
            job.config = config.model_dump()
            if self.repo.save_job(job):
                return job
            # cancelled between the claim and now: nothing to run; look for another project

    def heartbeat(self, job_id: str, worker_id: str | None = None) -> bool:
        """Mark an active job alive (and owned by `worker_id`); False once it is final."""
        return self.repo.touch_job(job_id, worker_id)

    def flush_notifications(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for notifications still in flight (before a process
        that ran jobs exits)."""
        self.notifier.flush(timeout)

    # ---- helpers ----------------------------------------------------------------------------
    def _checked_config(self, *layers: dict[str, Any] | None) -> TrainingConfig:
        config = resolve_config(*layers)
        self.trainer.check_config(config)
        return config

    def _step(self, job: TrainingJob, state: JobState, *, patient: bool = False) -> None:
        job.advance(state)

        def save() -> bool:
            job.beat()
            return self.repo.save_job(job)

        if not (self._patiently(save) if patient else save()):
            raise JobCancelled(job.id)
        self._log(job.project_id, "info", f"step: {state.value}", job_id=job.id)

    def _patiently(self, call: Callable[[], _T]) -> _T:
        """`call()`, retried while the metadata store cannot be reached (an outage, not a
        refusal) with backoff, 0.2 s doubling to 5 s, for up to `record_retry_seconds`."""
        delay, deadline = 0.2, time.monotonic() + self.record_retry_seconds
        while True:
            try:
                return call()
            except MetadataError as exc:
                if not exc.unreachable or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        """Record the trained model (its artifacts uploaded: worth waiting for the store). A
        retry whose earlier try landed before its answer was lost finds the job no longer
        active (Conflict): then the model is recorded if its row is there."""
        tries = 0

        def record() -> None:
            nonlocal tries
            tries += 1
            self.repo.record_model(model, job)

        try:
            self._patiently(record)
        except Conflict:
            if tries > 1 and any(m.metadata.get("job_id") == job.id
                                 for m in self.repo.list_models(job.project_id)):
                return
            raise

    def _progress_sink(
        self, job: TrainingJob, on_progress: Callable[[TrainingJob], None] | None
    ) -> Callable[[EpochProgress], None]:
        last_save = 0.0

        def sink(p: EpochProgress) -> None:
            nonlocal last_save
            epoch_end = p.step is None
            if p.message:
                self._log(job.project_id, "info", p.message, job_id=job.id)
            now = time.monotonic()
            if not epoch_end and now - last_save < PROGRESS_SAVE_SECONDS:
                return
            last_save = now
            kept = {k: v for k, v in job.progress.items()
                    if not (epoch_end and k in ("step", "steps"))}
            job.progress = {**kept, **p.model_dump(exclude_none=True, exclude={"message"})}
            job.beat()
            if not self.repo.save_job(job):
                raise JobCancelled(job.id)
            if epoch_end and p.message is None:
                self._log(job.project_id, "info", f"epoch {p.epoch}/{p.epochs}", job_id=job.id,
                          **p.model_dump(exclude_none=True, exclude={"message", "step", "steps"}))
            if on_progress:
                on_progress(job)

        return sink

    @staticmethod
    def _job_metrics(result: TrainResult) -> dict[str, Any]:
        """The finished job's metrics object with its verdict (the trainer's verdict when it
        gave one, else judged here from its metrics)."""
        metrics = dict(result.metrics)
        if "verdict" not in metrics:
            metrics["verdict"] = judge(metrics, num_classes=len(result.class_names))
        return job_metrics(metrics, num_classes=len(result.class_names))

    def _model_record(
        self, project: Project, job: TrainingJob, result: TrainResult, urls: dict[str, str],
        summary: dict[str, Any],
    ) -> ModelRecord:
        metrics = result.metrics
        return ModelRecord(
            project_id=project.id, name=f"{project.name}_model", framework="pytorch",
            gcs_url=urls["model.pth"], accuracy=result.accuracy,
            metadata={
                "epochs": result.epochs_run, "backbone": result.backbone,
                "trainer": result.trainer, "class_names": result.class_names,
                "metrics": {**{k: metrics[k] for k in ("val_accuracy", "test_accuracy",
                                                       "best_epoch") if k in metrics},
                            **summary},
                "manifest_url": urls.get("manifest.json"), "job_id": job.id,
                "reports": {n: urls[n] for n in REPORT_NAMES if n in urls},
                "sha256": result.weights_sha256,
            },
        )

    def _save_failure(self, job: TrainingJob) -> bool:
        """Save a failed job, retrying while the store cannot write (a full disk, an outage)
        for up to `record_retry_seconds`: a failure is recorded with its cause, not dropped.
        False when the job became final meanwhile (cancelled, or failed from outside)."""
        delay, deadline = 0.2, time.monotonic() + self.record_retry_seconds
        while True:
            try:
                return self.repo.save_job(job)
            except Exception:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _discard_uploads(self, job: TrainingJob, urls: list[str]) -> None:
        """Remove the artifacts a failed or cancelled job uploaded. Those that cannot be
        removed, or might belong to a recorded model (the store did not say), are listed in the
        project's log for removal by hand."""
        if not urls:
            return
        try:
            recorded = any(m.metadata.get("job_id") == job.id
                           for m in self.repo.list_models(job.project_id))
        except Exception:  # the store cannot tell: a lost reply may have recorded the model
            recorded = None
        if recorded:
            return

        def removed(url: str) -> bool:
            try:
                self.blobs.delete(url)
            except Exception:  # the store went away, or refuses deletes
                return False
            return True

        left = list(urls) if recorded is None else [u for u in urls if not removed(u)]
        shown = [redact_url(u) for u in urls]
        if left:
            self._log(job.project_id, "warning", "artifacts uploaded before the job failed are "
                      "still in the model store: remove them by hand", job_id=job.id,
                      artifacts=[redact_url(u) for u in left])
        else:
            self._log(job.project_id, "info", f"removed {len(urls)} artifacts uploaded before "
                      "the job failed", job_id=job.id, artifacts=shown)

    def _end_failed(self, job: TrainingJob, cause: str, type_name: str,
                    project_name: str | None = None, *, patient: bool = False) -> None:
        """End `job` failed with `cause` (already redacted) at the step it is in; when this save is the one that ended it (not cancelled or failed meanwhile), set the
        project `training_failed`, log the failure and notify. `patient`: retry the save while
        the store cannot write (a worker recording its own job's failure)."""
        step = job.state.value
        job.fail(cause)
        if self._save_failure(job) if patient else self.repo.save_job(job):
            self._after_failure(job, step, cause, type_name, project_name)

    def _after_failure(
        self, job: TrainingJob, step: str, cause: str, type_name: str,
        project_name: str | None = None,
    ) -> None:
        self._safely(self.repo.set_project_status, job.project_id, ProjectStatus.TRAINING_FAILED)
        self._log(job.project_id, "error", f"training failed at step {step}: {cause}",
                  job_id=job.id, step=step, error_type=type_name)
        name = project_name or self._safely(lambda: self.repo.get_project(job.project_id).name)
        self._notify(Notification(
            project_id=job.project_id, project_name=name or job.project_id, ok=False,
            message=f"Training failed at step {step}: {cause}",
            details={"step": step, "cause": cause, "job_id": job.id},
        ))

    def _notify(self, n: Notification) -> None:
        try:
            self.notifier.notify(n)
        except Exception as exc:  # the user's chat being down never fails a job
            self._log(n.project_id, "warning", redact_text(f"notification failed: {exc}"))

    def _log(self, project_id: str | None, level: str, message: str, **details: Any) -> None:
        self._safely(self.repo.add_log,
                     LogEntry(project_id=project_id, level=level, message=message,
                              details=details))

    @staticmethod
    def _safely(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # a failing store must not hide the original failure
            return None


__all__ = ["IdempotencyKeyReused", "JobNotFound", "TrainingService", "sha256_of",
           "success_message"]
