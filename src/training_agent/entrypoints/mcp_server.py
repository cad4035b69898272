"""The MCP tool server: start, read and cancel training, list backbones; same service and runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from training_agent import __version__
from training_agent.domain.config import describe_knobs
from training_agent.domain.errors import TrainingAgentError
from training_agent.domain.models import JobState
from training_agent.domain.service import TrainingService
from training_agent.domain.urls import redact_text

from .worker.runner import JobRunner

INSTRUCTIONS = (
    "Trains image-classification models for projects. Call start_training with a project id, "
    "then poll training_status until project_status is pending_evaluation (done), "
    "training_failed or training_cancelled. list_projects finds projects (newest first) and "
    "their last job; list_backbones shows what `config.backbone` takes; dataset_report "
    "returns a finished job's dataset check (duplicates, leaks, imbalance)."
)
START_DESCRIPTION = """Queue a training job for the project; it runs in a worker process. `config`
overrides the project's training config; any subset of these keys (unknown keys and
out-of-range values are refused, naming the key):
{knobs}
`force` starts from any project status (never while a job is active). `idempotency_key` (e.g. a
UUID) makes a retry safe: the same key with the same project_id, config and force returns the
first call's job instead of a second job or a conflict; the key with different arguments is
refused."""


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """A domain error (not found, conflict, bad config) is the tool's answer, not a crash."""
    try:
        yield
    except TrainingAgentError as exc:
        raise ToolError(redact_text(f"{type(exc).__name__}: {exc}")) from None


def build_mcp_server(service: TrainingService, runner: JobRunner) -> MCPServer:
    server: MCPServer[Any] = MCPServer(name="training-agent", instructions=INSTRUCTIONS,
                                       version=__version__)
    tool: Callable[..., Any] = server.tool

    @tool(description=START_DESCRIPTION.format(knobs=describe_knobs()))
    def start_training(project_id: str, config: dict[str, Any] | None = None,
                       force: bool = False,
                       idempotency_key: str | None = None) -> dict[str, Any]:
        with _as_tool_error():
            job = service.start(project_id, config, force, worker_id=runner.owner,
                                idempotency_key=idempotency_key)
            if job.state is JobState.QUEUED and job.worker_id == runner.owner:
                runner.submit(job.id)
        return {"job_id": job.id, "project_id": job.project_id, "state": job.state.value}

    @tool()
    def training_status(project_id: str) -> dict[str, Any]:
        """The project's status, its latest job (state, progress, error, model URL; once it
        has finished, `metrics` — test and validation accuracy, per-class precision, recall and
        f1, epochs run, stop reason and a `verdict` whose level `chance` or `weak` means the
        model did not clearly learn — and a plain-words `summary`) and its recent log lines,
        newest first."""
        with _as_tool_error():
            return service.status(project_id).model_dump(mode="json")

    @tool()
    def list_projects(limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Projects, newest first: each one's id, name, status and last job (state, accuracy
        once it has succeeded). Pages of `limit` (1 to 100); `next_offset` is the next page's
        `offset`, null on the last page."""
        with _as_tool_error():
            return service.list_projects(limit, offset).model_dump(mode="json")

    @tool()
    def cancel_training(project_id: str) -> dict[str, Any]:
        """Cancel the project's active training job; its worker stops within seconds."""
        with _as_tool_error():
            job = runner.cancel(project_id)
        return {"job_id": job.id, "project_id": job.project_id, "state": job.state.value}

    @tool()
    def dataset_report(project_id: str | None = None,
                       job_id: str | None = None) -> dict[str, Any]:
        """The dataset check of a job (`job_id`) or of the project's latest job, as JSON:
        counts per class and split, `balance` (imbalance ratio, warning flag), classes missing
        from a split, `duplicates` (exact and near pairs within and across splits; `test_leak`:
        test images copying training images, which inflate the test accuracy), `files`
        (unreadable, tiny, blank, extreme-aspect images; sizes and modes), how val/test were
        made, `warnings` ({code, text}) and a one-line `summary`. Available once the job has
        succeeded (it is stored beside the model); training_status's `job.metrics.findings`
        and `job.summary` give the result analysis in brief."""
        with _as_tool_error():
            return service.dataset_report(project_id=project_id, job_id=job_id)

    @tool()
    def list_backbones(filter: str | None = None, provider: str | None = None,
                       pretrained: bool = False, limit: int = 50,
                       offset: int = 0) -> dict[str, Any]:
        """What `config.backbone` (with `config.trainer` = its provider) takes. `recommended`:
        a short list by size and speed to try first. `backbones`: one page (`limit`, at most
        500, from `offset`; `next_offset` is the next page's, null on the last) of those whose
        name holds `filter` (or matches it as a glob, e.g. `resnet*`), of one `provider`
        (torchvision, timm, ...), with pretrained weights only when `pretrained` is true;
        `total` counts the matches and `providers` every plugin's backbones."""
        with _as_tool_error():
            return service.find_backbones(filter, provider, pretrained, limit,
                                          offset).model_dump(mode="json")

    return server
