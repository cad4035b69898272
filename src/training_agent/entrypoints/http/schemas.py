"""Request and response bodies of the HTTP API, as the OpenAPI schema lists them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from training_agent.domain.views import StatusView

__all__ = ["CancelAccepted", "CheckResult", "ErrorBody", "Health", "StartAccepted",
           "StartRequest", "StatusView"]


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a str (not a UUID) so that a bad one gets the API's own 422; the schema says uuid
    project_id: str = Field(description="the project to train (a UUID)",
                            json_schema_extra={"format": "uuid"})
    config: dict[str, Any] | None = Field(
        None, description="training config overrides, merged over the project's config")
    force: bool = Field(False, description="start from any project status (never while a job "
                                           "is active)")


class StartAccepted(BaseModel):
    job_id: str
    project_id: str
    state: str = Field(description="the job's state: `queued` until a worker picks it up")
    status_url: str


class CancelAccepted(BaseModel):
    job_id: str
    project_id: str
    state: str
    project_status: str


class CheckResult(BaseModel):
    ok: bool
    detail: str
    seconds: float


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckResult]


class ErrorBody(BaseModel):
    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None
