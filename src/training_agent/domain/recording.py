"""A trained job's end: its model recorded (the job `succeeded`), the last log row and the
success notification, which say plainly how good the model is."""

from __future__ import annotations

from typing import Any

from .errors import Conflict
from .journal import Part
from .models import JobState, ModelRecord, Project, TrainingJob
from .ports import MetadataRepo, Notification, TrainResult
from .urls import redact_url
from .verdict import job_metrics, judge, summarize

REPORT_NAMES = ("dataset_report.json", "report.json", "report.html")  # beside the model


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


def finished_metrics(result: TrainResult) -> dict[str, Any]:
    """The finished job's metrics object with its verdict (the trainer's verdict when it
    gave one, else judged here from its metrics)."""
    metrics = dict(result.metrics)
    if "verdict" not in metrics:
        metrics["verdict"] = judge(metrics, num_classes=len(result.class_names))
    return job_metrics(metrics, num_classes=len(result.class_names))


def model_record(project: Project, job: TrainingJob, result: TrainResult, urls: dict[str, str],
                 reports: dict[str, str], summary: dict[str, Any]) -> ModelRecord:
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
            "reports": reports,
            "sha256": result.weights_sha256,
        },
    )


def model_recorded(repo: MetadataRepo, job: TrainingJob) -> bool:
    """Whether a model row names `job` (a lost reply may have hidden its recording)."""
    return any(m.metadata.get("job_id") == job.id for m in repo.list_models(job.project_id))


class Recorder(Part):
    """The `recording` step: the model row, the job `succeeded`, the user told."""

    def record(self, job: TrainingJob, project: Project, result: TrainResult,
               urls: dict[str, str], uploaded: list[str]) -> None:
        """Record the model whose artifacts are at `urls`; `uploaded` is emptied once a model
        row points at them. Then the last log row and the notification."""
        # the artifacts are uploaded: from here an outage is waited out, not a failure
        self.journal.step(job, JobState.RECORDING, patient=True)
        metrics = finished_metrics(result)
        reports = {n: urls[n] for n in REPORT_NAMES if n in urls}
        model = model_record(project, job, result, urls, reports, metrics)
        succeeded = job.model_copy(deep=True)  # `job` stays active if recording fails
        succeeded.advance(JobState.SUCCEEDED)
        succeeded.progress["model_url"] = model.url
        succeeded.progress["metrics"] = metrics  # progress is stored as JSON by every store
        if reports:
            succeeded.progress["reports"] = reports
        self._record_model(model, succeeded)
        uploaded.clear()  # the model now: kept whatever happens next
        self._announce(job, project, result, model, metrics, reports)

    def _record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        """Record the trained model (its artifacts uploaded: worth waiting for the store). A
        retry whose earlier try landed before its answer was lost finds the job no longer
        active (Conflict): then the model is recorded if its row is there."""
        tries = 0

        def record() -> None:
            nonlocal tries
            tries += 1
            self.setup.repo.record_model(model, job)

        try:
            self.journal.patiently(record)
        except Conflict:
            if tries > 1 and model_recorded(self.setup.repo, job):
                return
            raise

    def _announce(self, job: TrainingJob, project: Project, result: TrainResult,
                  model: ModelRecord, metrics: dict[str, Any], reports: dict[str, str]) -> None:
        verdict = metrics["verdict"]
        model_url = redact_url(model.url)
        done = "training complete; status pending_evaluation"
        # with the trainer's report, the last row and the message carry the whole summary
        summary = summarize(metrics) if "findings" in metrics else None
        said = summary or verdict["text"]
        self.journal.log(
            project.id, "info" if verdict["level"] == "ok" else "warning",
            (f"{done} — {summary}" if summary else done) if verdict["level"] == "ok"
            else f"{done} — ⚠️ {said}",
            job_id=job.id, accuracy=result.accuracy, model_url=model_url, verdict=verdict,
            **({"summary": summary, "reports": [redact_url(u) for u in reports.values()]}
               if summary else {}))
        self.journal.notify(Notification(
            project_id=project.id, project_name=project.name, ok=True,
            message=success_message(project.name, result.accuracy, verdict, summary),
            details={"accuracy": result.accuracy, "model_url": model_url, "job_id": job.id,
                     "verdict": verdict,
                     **({"summary": summary,
                         "report_url": redact_url(reports["report.html"])}
                        if summary and "report.html" in reports else {})},
        ))
