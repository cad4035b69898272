"""The read side of the service: a project's status, the project list and page, a job's
dataset report, and the backbone catalog's pages. Views for people and programs, from the
metadata store (and the model store, for reports); nothing here changes anything."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backbones import RECOMMENDED, matches
from .errors import InvalidInput, JobNotFound, NotFound, StorageError
from .models import Dataset, JobState, Project, TrainingJob, new_id
from .ports import BlobStore, MetadataRepo, Trainer
from .urls import redact_text, redact_url
from .verdict import job_metrics
from .views import (
    BackbonePageView,
    BackboneView,
    JobMetricsView,
    JobView,
    LastJobView,
    LogView,
    ProgressView,
    ProjectPageView,
    ProjectSummaryView,
    ProjectView,
    StatusView,
    job_summary,
)

MAX_PAGE = 100  # projects in one page of the project list
MAX_BACKBONES = 500  # backbones in one page


SHOWN_ID_CHARS = 40  # of a value that is not a UUID, in the error that refuses it


def checked_id(value: str, what: str = "project_id") -> str:
    """IDs are UUIDs; anything else is bad input (422), not a missing row (404). The error
    shows at most the first SHOWN_ID_CHARS characters of the value."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        text = str(value)
        if len(text) <= SHOWN_ID_CHARS:
            raise InvalidInput(f"{what} {text!r} is not a UUID") from None
        raise InvalidInput(f"{what} {text[:SHOWN_ID_CHARS]!r}… ({len(text)} characters) is not "
                           "a UUID") from None

def _report_urls(job: TrainingJob) -> dict[str, str] | None:
    reports = job.progress.get("reports")
    if not isinstance(reports, dict) or not reports:
        return None
    return {str(k): redact_url(str(v)) for k, v in reports.items()}


def _project_summary(project: Project, job: TrainingJob | None) -> ProjectSummaryView:
    last = None
    if job is not None:
        metrics = job.progress.get("metrics")
        accuracy = None
        if job.state is JobState.SUCCEEDED and isinstance(metrics, dict):
            found = metrics.get("test_accuracy", metrics.get("val_accuracy"))
            accuracy = float(found) if isinstance(found, int | float) else None
        last = LastJobView(id=job.id, state=job.state.value, accuracy=accuracy,
                           queued_at=job.queued_at or job.created_at,
                           finished_at=job.finished_at)
    return ProjectSummaryView(id=project.id, name=project.name, status=project.status.value,
                              created_at=project.created_at, updated_at=project.updated_at,
                              last_job=last)


@dataclass
class ProjectQueries:
    repo: MetadataRepo
    blobs: BlobStore
    trainer: Trainer
    work_root: Path

    def status(self, project_id: str, log_limit: int = 20) -> StatusView:
        project_id = checked_id(project_id)
        project = self.repo.get_project(project_id)
        job = self.repo.latest_job(project_id)
        view = StatusView(
            project_id=project.id, project_status=project.status.value,
            recent_logs=[LogView(level=e.level, message=redact_text(e.message), details=e.details,
                                 created_at=e.created_at)
                         for e in self.repo.recent_logs(project_id, log_limit)],
        )
        if job is not None:
            url = job.progress.get("model_url")
            stored = job.progress.get("metrics")
            metrics = (JobMetricsView.model_validate(job_metrics(stored))
                       if job.state is JobState.SUCCEEDED and isinstance(stored, dict) else None)
            error = redact_text(job.error) if job.error else None  # rows from before the rule
            view.job = JobView(
                id=job.id, state=job.state.value, error=error,
                progress=ProgressView.model_validate(job.progress),
                model_url=redact_url(url) if url else None,
                queued_at=job.queued_at or job.created_at, started_at=job.started_at,
                finished_at=job.finished_at,
                metrics=metrics, summary=job_summary(job.state.value, error, metrics),
                reports=_report_urls(job),
            )
        return view

    def list_projects(self, limit: int = 20, offset: int = 0) -> ProjectPageView:
        """A page of projects, newest first, each with its latest job's state and accuracy."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_PAGE} (got {limit!r})")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput(f"offset must be an integer of 0 or more (got {offset!r})")
        rows = self.repo.list_projects(limit + 1, offset)  # one more: is there a next page?
        return ProjectPageView(
            projects=[_project_summary(p, j) for p, j in rows[:limit]], limit=limit,
            offset=offset, next_offset=offset + limit if len(rows) > limit else None)

    def project(self, project_id: str) -> ProjectView:
        """One project: status, config, dataset, latest job and latest model."""
        project = self.repo.get_project(checked_id(project_id))
        summary = _project_summary(project, self.repo.latest_job(project.id))
        try:
            dataset: Dataset | None = self.repo.latest_dataset(project.id)
        except NotFound:
            dataset = None
        models = self.repo.list_models(project.id)
        model = models[-1] if models else None
        return ProjectView(
            **summary.model_dump(), training_config=project.training_config,
            dataset_url=redact_url(dataset.url) if dataset else None,
            num_classes=dataset.num_classes if dataset else None,
            model_url=redact_url(model.url) if model else None,
            model_accuracy=model.accuracy if model else None)

    def dataset_report(self, project_id: str | None = None,
                       job_id: str | None = None) -> dict[str, Any]:
        """The dataset check (dataset_report.json) of job `job_id`, or of the project's latest
        job; NotFound when there is no such job or it has no report (it is uploaded with the
        model's artifacts, so a job that has not succeeded has none)."""
        if job_id is not None:
            job = self.repo.get_job(checked_id(job_id, "job_id"))
            if project_id is not None and job.project_id != checked_id(project_id):
                raise JobNotFound(f"job {job_id} is not a job of project {project_id}")
        elif project_id is not None:
            self.repo.get_project(checked_id(project_id))
            found = self.repo.latest_job(checked_id(project_id))
            if found is None:
                raise JobNotFound(f"project {project_id} has no training job yet")
            job = found
        else:
            raise InvalidInput("give a project_id or a job_id")
        url = (job.progress.get("reports") or {}).get("dataset_report.json")
        if not isinstance(url, str):
            raise NotFound(f"job {job.id} ({job.state.value}) has no dataset report: it is "
                           "written with the model's artifacts when a job succeeds")
        dest = self.work_root / "reports" / f"{job.id}-{new_id()}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.blobs.download(url, dest)
            body: dict[str, Any] = json.loads(dest.read_text())
        except ValueError as exc:
            raise StorageError(f"the dataset report of job {job.id} is unreadable: {exc}") \
                from None
        finally:
            dest.unlink(missing_ok=True)
        return body

    def find_backbones(self, text: str | None = None, provider: str | None = None,
                       pretrained: bool = False, limit: int | None = None,
                       offset: int = 0) -> BackbonePageView:
        """The backbones whose name holds `text` (or matches it as a glob), of one `provider`,
        only those with pretrained weights; by provider then name, `limit` from `offset` (all
        without a limit); and the recommended few that are installed."""
        if limit is not None and (isinstance(limit, bool) or not 1 <= limit <= MAX_BACKBONES):
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_BACKBONES} "
                               f"(got {limit!r})")
        if isinstance(offset, bool) or offset < 0:
            raise InvalidInput(f"offset must be an integer of 0 or more (got {offset!r})")
        catalog = self.trainer.backbone_catalog()
        counts: dict[str, int] = {}
        for info in catalog:
            counts[info.provider] = counts.get(info.provider, 0) + 1
        if provider is not None and provider not in counts:
            raise InvalidInput(f"no trainer plugin {provider!r}; installed: "
                               f"{', '.join(sorted(counts)) or 'none'}")
        found = sorted((b for b in catalog if matches(b, text, provider, pretrained)),
                       key=lambda b: (b.provider, b.name))
        page = found[offset:] if limit is None else found[offset:offset + limit]
        known = {(b.provider, b.name): b for b in catalog}
        recommended = [BackboneView(**known[(r.provider, r.name)].model_dump(), size=r.size,
                                    note=r.note)
                       for r in RECOMMENDED if (r.provider, r.name) in known]
        end = offset + len(page)
        return BackbonePageView(
            backbones=[BackboneView(**b.model_dump()) for b in page], total=len(found),
            limit=limit if limit is not None else len(found), offset=offset,
            next_offset=end if end < len(found) else None, providers=counts,
            recommended=recommended)

