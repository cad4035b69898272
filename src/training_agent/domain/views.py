"""Read models returned to the HTTP API, the CLI and MCP."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from .verdict import summarize


class ProgressView(BaseModel):
    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_accuracy: float | None = None
    images_per_second: float | None = None
    eta_seconds: float | None = None


class VerdictView(BaseModel):
    level: Literal["ok", "weak", "chance"] = Field(
        description="`chance`: not clearly above chance or the majority-class rate; `weak`: "
                    "above, but closing less than half the gap to a perfect score; `ok`")
    text: str = Field(description="the verdict in plain words, with advice when not `ok`")


class ClassMetricsView(BaseModel):
    precision: float
    recall: float = Field(description="the share of this class's images recognised")
    f1: float
    support: int | None = Field(None, description="this class's images in the result split")


class FindingsView(BaseModel):
    """The report's findings in brief (report.json holds the full analysis, dataset_report.json
    the dataset check): what an assistant acts on."""

    model_config = ConfigDict(extra="allow")

    classes: int | None = None
    chance: float | None = Field(None, description="1 / classes")
    result_split: str | None = Field(None, description="`test`, else `val`")
    most_confused: dict[str, Any] | None = Field(
        None, description="`{true, predicted, count}`: the largest off-diagonal cell")
    test_leak: dict[str, Any] | None = Field(
        None, description="`{images, of, share}`: test images that copy (exactly or nearly) a "
                          "training or validation image; they inflate the test accuracy")
    duplicate_pairs_within_splits: int | None = None
    label_conflicts: int | None = Field(
        None, description="pairs of copies of one picture filed under different classes")
    label_issues: dict[str, Any] | None = Field(
        None, description="`{available, count, method, withheld?}`: suspected label errors "
                          "(cleanlab); `withheld` names the verdict (`chance`, `weak`) for "
                          "which they were not computed: such a model cannot judge labels")
    imbalance: dict[str, Any] | None = Field(
        None, description="`{ratio, smallest, warn}`: largest / smallest training class")
    missing_from_test: list[str] | None = None
    suspicious_files: dict[str, int] | None = Field(
        None, description="counts of tiny, extreme-aspect and mostly blank images")
    unreadable: int | None = None
    train_images: int | None = None


class JobMetricsView(BaseModel):
    """A finished job's metrics (the same object is in the models row's metadata)."""

    test_accuracy: float | None = Field(None, description="absent without a test split")
    val_accuracy: float | None = None
    per_class: dict[str, ClassMetricsView] = Field(
        default_factory=dict, description="by class name, on the test split (else validation)")
    epochs_run: int | None = None
    stop_reason: str | None = Field(
        None, description="why training stopped: `epochs`, `early_stopping`, `max_minutes`, ...")
    verdict: VerdictView
    findings: FindingsView | None = Field(
        None, description="from the job's report: confusions, leaks, duplicates, label errors")

    @model_serializer(mode="wrap")
    def _without_absent_test(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for absent in ("test_accuracy", "findings"):
            if data.get(absent) is None:
                data.pop(absent, None)
        return data


class JobView(BaseModel):
    id: str
    state: str
    progress: ProgressView
    error: str | None = None
    model_url: str | None = None
    queued_at: datetime = Field(description="when the start queued the job")
    started_at: datetime | None = Field(None, description="when a worker began the job; null "
                                                          "while it waits in the queue")
    finished_at: datetime | None = None
    metrics: JobMetricsView | None = Field(None, description="once the job has succeeded")
    summary: str | None = Field(
        None, description="a few plain sentences once it has finished: the accuracy against "
                          "chance, the weakest class and most confused pair, what in the data "
                          "inflates the score, and the next step")
    reports: dict[str, str] | None = Field(
        None, description="the job's report artifacts by name (dataset_report.json, "
                          "report.json, report.html) and their URLs")


def job_summary(state: str, error: str | None, metrics: JobMetricsView | None) -> str | None:
    """What a person should read first about a finished job; None while it is active."""
    if state == "succeeded":
        return summarize(metrics.model_dump()) if metrics else "Training succeeded."
    if state == "failed":
        return f"Training failed: {error}." if error else "Training failed."
    if state == "cancelled":
        return "Training was cancelled; no model was recorded."
    return None


class LogView(BaseModel):
    level: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class StatusView(BaseModel):
    project_id: str
    project_status: str
    job: JobView | None = None
    recent_logs: list[LogView] = Field(default_factory=list)


class LastJobView(BaseModel):
    """A project's latest job in brief."""

    id: str
    state: str
    accuracy: float | None = Field(
        None, description="test accuracy (validation accuracy without a test split) once the "
                          "job has succeeded")
    queued_at: datetime
    finished_at: datetime | None = None


class ProjectSummaryView(BaseModel):
    id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    last_job: LastJobView | None = Field(None, description="null before the first start")


class ProjectPageView(BaseModel):
    """One page of projects, newest first."""

    projects: list[ProjectSummaryView]
    limit: int
    offset: int
    next_offset: int | None = Field(
        None, description="the `offset` of the next page; null on the last page")


class ProjectView(ProjectSummaryView):
    """One project: its summary, training config, dataset and latest model."""

    training_config: dict[str, Any] = Field(default_factory=dict)
    dataset_url: str | None = None
    num_classes: int | None = None
    model_url: str | None = Field(None, description="the latest recorded model's weights")
    model_accuracy: float | None = None


class BackboneView(BaseModel):
    provider: str = Field(description="the trainer plugin: `config.trainer`")
    name: str = Field(description="`config.backbone`")
    pretrained: bool | None = Field(
        None, description="whether published pretrained weights exist (null: the plugin does "
                          "not say)")
    size: str | None = Field(None, description="recommended ones: small, medium or large")
    note: str | None = Field(None, description="recommended ones: why, and what it costs")


class BackbonePageView(BaseModel):
    """Backbones matching a query, by provider then name, one page of them; the recommended
    few are listed with every page."""

    backbones: list[BackboneView]
    total: int = Field(description="how many match")
    limit: int
    offset: int
    next_offset: int | None = Field(None, description="null on the last page")
    providers: dict[str, int] = Field(
        default_factory=dict, description="every installed plugin and how many backbones it "
                                          "offers in all")
    recommended: list[BackboneView] = Field(default_factory=list)
