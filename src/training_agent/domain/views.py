"""Read models returned to the HTTP API, the CLI and MCP."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field


def redact_url(url: str) -> str:
    """Drop credentials and query strings (signed URLs carry tokens) before a URL is shown."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ProgressView(BaseModel):
    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_accuracy: float | None = None
    images_per_second: float | None = None
    eta_seconds: float | None = None


class JobView(BaseModel):
    id: str
    state: str
    progress: ProgressView
    error: str | None = None
    model_url: str | None = None
    started_at: datetime
    finished_at: datetime | None = None


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
