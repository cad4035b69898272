"""The `training-agent` command line."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from training_agent.domain.config import config_json_schema, describe_knobs
from training_agent.domain.errors import TrainingAgentError
from training_agent.domain.models import JobState
from training_agent.domain.queries import MAX_PAGE
from training_agent.domain.urls import redact_text, redact_url
from training_agent.domain.verdict import describe_stop, worst_classes
from training_agent.domain.views import BackbonePageView, JobView, ProgressView, ProjectPageView

from .container import Container, build_container
from .progress import JobProgressBar
from .settings import Settings, describe_settings_error
from .worker.process import run_job_here
from .worker.runner import STALE_AFTER_SECONDS, agent_id, build_runner


def _json_option(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object")
    return parsed


class AgentGroup(click.Group):
    """Turns domain errors, bad input among them (a malformed id, a refused config), into a
    one-line message and exit code 1. Exit code 2 is click's own usage errors (an unknown
    option, --config that is not a JSON object) and invalid settings."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TrainingAgentError as exc:
            click.echo(f"error: {redact_text(str(exc))}", err=True)
            ctx.exit(1)


@click.group(cls=AgentGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """training-agent: dataset in object storage -> trained, verified, recorded model."""
    try:
        settings = Settings()
    except ValidationError as exc:
        click.echo(f"error: {describe_settings_error(exc)}", err=True)
        ctx.exit(2)
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = build_container(settings)
    ctx.meta["settings"] = settings


def _container() -> Container:
    return click.get_current_context().obj


def _settings() -> Settings:
    return click.get_current_context().meta["settings"]


LOG_NOTIFIER = "training_agent.notify"  # the embedded default notifier's logger


def run_job_in_foreground(container: Container, job_id: str, quiet: bool = False) -> int:
    """Run the job here. Ctrl-C (SIGINT) or SIGTERM ends the job `failed` ("interrupted by
    SIGINT") and returns 130 / 143, so the project can be trained again at once."""
    service = container.training_service()
    bar = JobProgressBar(disable=quiet, file=sys.stderr)
    # the outcome is printed here (the error line, or the metrics): the log notifier's copy of
    # it on the same terminal would say it twice (a webhook still gets its message)
    said_by_log = logging.getLogger(LOG_NOTIFIER)
    was_disabled, said_by_log.disabled = said_by_log.disabled, True
    try:
        outcome = run_job_here(service, job_id, f"{agent_id('cli')}/pid:{os.getpid()}",
                               on_progress=bar)
    finally:
        bar.close()
        said_by_log.disabled = was_disabled
    job, interrupted = outcome.job, outcome.interrupted
    assert job is not None
    if interrupted:
        click.echo(f"error: job {job.id} {job.state.value}: interrupted by {interrupted}",
                   err=True)
        return {"SIGINT": 130, "SIGTERM": 143}.get(interrupted, 1)
    if job.state is JobState.SUCCEEDED:
        return 0
    click.echo(f"error: job {job.id} {job.state.value}: {job.error}", err=True)
    return 1


VERDICT_MARKS = {"ok": "✅", "weak": "⚠️", "chance": "⚠️"}


def metrics_lines(job: JobView) -> list[str]:
    """A finished job's metrics for people: accuracy (test, then validation), the worst classes
    by recall (the share of their images recognised), epochs and why training stopped, the
    verdict. Empty until the job has succeeded."""
    m = job.metrics
    if m is None:
        return []
    if m.test_accuracy is not None:
        head = f"test accuracy: {m.test_accuracy:.4f}"
        head += f" (validation {m.val_accuracy:.4f})" if m.val_accuracy is not None else ""
    elif m.val_accuracy is not None:
        head = f"validation accuracy: {m.val_accuracy:.4f} (no test split)"
    else:
        head = "accuracy: not measured"
    lines = [head]
    worst = worst_classes({k: v.model_dump() for k, v in m.per_class.items()}, 3)
    if worst:
        below = [(name, row) for name, row in worst if row["recall"] < 1.0]
        lines.append("worst classes by per-class accuracy (recall): " + (", ".join(
            f"{name} {row['recall']:.2f}" for name, row in below) or "none, every class 1.00"))
    if m.epochs_run is not None:
        stop = describe_stop(m.stop_reason)
        lines.append(f"epochs run: {m.epochs_run}" + (f" ({stop})" if stop else ""))
    v = m.verdict
    lines.append(f"verdict: {VERDICT_MARKS.get(v.level, '')} {v.level}: {v.text}")
    if m.findings is not None and job.summary:  # the report's actionable summary
        lines.append(f"summary: {job.summary}")
    if job.reports and "report.html" in job.reports:
        lines.append(f"report: {job.reports['report.html']}")
    return lines


def progress_line(progress: ProgressView) -> str | None:
    """Training progress rounded for people: epoch=3/10, train_loss=2.09, val_accuracy=0.7600."""
    p = progress
    parts = []
    if p.epoch is not None:
        parts.append(f"epoch={p.epoch}" + (f"/{p.epochs}" if p.epochs is not None else ""))
    if p.train_loss is not None:
        parts.append(f"train_loss={p.train_loss:.2f}")
    if p.val_accuracy is not None:
        parts.append(f"val_accuracy={p.val_accuracy:.4f}")
    if p.images_per_second is not None:
        parts.append(f"images_per_second={p.images_per_second:.0f}")
    if p.eta_seconds is not None:
        parts.append(f"eta_seconds={p.eta_seconds:.0f}")
    return "progress: " + ", ".join(parts) if parts else None


def fail_stale_jobs(container: Container) -> None:
    """What `serve` and `watch` do at start: fail active jobs whose heartbeat went stale (a
    foreground `train` that was SIGKILLed leaves one), so the project can be started again."""
    for job in container.training_service().fail_stale(timedelta(seconds=STALE_AFTER_SECONDS)):
        click.echo(f"job {job.id} of project {job.project_id} failed: {job.error}", err=True)


@main.command()
@click.option("--epochs", type=int, default=4, show_default=True)
def demo(epochs: int) -> None:
    """The whole flow offline on a small generated dataset; prints the metrics, the verdict and
    the model URL."""
    from training_agent.testing.datasets import make_dataset_zip

    container = _container()
    service = container.training_service()
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = make_dataset_zip(Path(tmp) / "shapes.zip", classes=3, size=32,
                                    per_class={"train": 60, "val": 15, "test": 15})
        url = service.store_dataset(zip_path)
    config = {"pretrained": False, "backbone": "resnet18", "epochs": epochs, "image_size": 32,
              "batch_size": 32}
    project = service.create_project("demo-shapes", url, config)
    click.echo(f"project {project.id} created with dataset {redact_url(url)}")
    fail_stale_jobs(container)
    job = service.start(project.id)
    code = run_job_in_foreground(container, job.id)
    if code:
        sys.exit(code)
    status = service.status(project.id)
    model = container.metadata_repo().list_models(project.id)[-1]
    for line in metrics_lines(status.job) if status.job else []:
        click.echo(line)
    click.echo(f"model: {status.job.model_url if status.job else model.url}")
    click.echo(f"project status: {status.project_status}")


@main.group()
def project() -> None:
    """Create, list and show projects."""


@project.command("create")
@click.option("--name", required=True)
@click.option("--dataset", "dataset", required=True, help="a local zip, or a gs://, s3://, "
              "https://storage.googleapis.com/ or file:// URL")
@click.option("--config", "config", default=None, help="training config as a JSON object "
              "(its keys: `training-agent config`)")
def project_create(name: str, dataset: str, config: str | None) -> None:
    """Create a project (pending_training) and its dataset row; prints the id last."""
    service = _container().training_service()
    cfg = _json_option(config)
    if "://" in dataset:
        url = dataset
        created = service.create_project(name, url, cfg)
    else:  # checked, then copied into the model store
        created, url = service.create_project_from_file(name, Path(dataset), cfg)
    click.echo(f"dataset: {redact_url(url)}")
    click.echo(created.id)


def _when(value: datetime | None) -> str:
    return f"{value.astimezone():%Y-%m-%d %H:%M}" if value else "-"


def project_rows(page: ProjectPageView) -> list[str]:
    """The project list for people: one aligned line per project, newest first."""
    header = ("created", "name", "id", "status", "last job", "accuracy")
    rows = [(_when(p.created_at), p.name, p.id, p.status,
             p.last_job.state if p.last_job else "-",
             f"{p.last_job.accuracy:.4f}" if p.last_job and p.last_job.accuracy is not None
             else "-") for p in page.projects]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in [header, *rows]]


@project.command("list")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True,
              help="projects per page")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="projects to skip (the previous page's next offset)")
@click.option("--json", "as_json", is_flag=True, help="the page as JSON (as the HTTP API)")
def project_list(limit: int, offset: int, as_json: bool) -> None:
    """Projects, newest first: name, id, status, last job state and accuracy."""
    page = _container().training_service().list_projects(limit, offset)
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    if not page.projects:
        click.echo("no projects" + (f" after the first {offset}" if offset else
                                    "; create one with `training-agent project create`"))
        return
    for line in project_rows(page):
        click.echo(line)
    if page.next_offset is not None:
        click.echo(f"more: training-agent project list --offset {page.next_offset}")


@project.command("show")
@click.argument("project_id")
@click.option("--json", "as_json", is_flag=True)
def project_show(project_id: str, as_json: bool) -> None:
    """One project: status, dataset, config, latest job and model."""
    view = _container().training_service().project(project_id)
    if as_json:
        click.echo(view.model_dump_json(indent=2))
        return
    job = view.last_job
    lines = [
        f"project {view.name} ({view.id})",
        f"status: {view.status}",
        f"created: {_when(view.created_at)}, updated: {_when(view.updated_at)}",
        f"dataset: {view.dataset_url or '-'}"
        + (f" ({view.num_classes} classes)" if view.num_classes else ""),
        f"config: {json.dumps(view.training_config) if view.training_config else 'defaults'}",
        "last job: " + (f"{job.id} {job.state}" + (f", accuracy {job.accuracy:.4f}"
                                                   if job.accuracy is not None else "")
                        + (f", finished {_when(job.finished_at)}" if job.finished_at else "")
                        if job else "none yet"),
    ]
    if view.model_url:
        lines.append(f"model: {view.model_url}" + (
            f" (accuracy {view.model_accuracy:.4f})" if view.model_accuracy is not None else ""))
    for line in lines:
        click.echo(line)


@main.command("config")
@click.option("--schema", "as_schema", is_flag=True,
              help="print the training config's JSON schema (also in the OpenAPI document)")
def config_command(as_schema: bool) -> None:
    """The training config's knobs: type, range, default and meaning."""
    if as_schema:
        click.echo(json.dumps(config_json_schema(), indent=2))
        return
    click.echo("training config keys (project create --config, train --config, the API's "
               "config); every key is optional:")
    click.echo(describe_knobs())


@main.command()
@click.argument("project_id")
@click.option("--config", "config", default=None, help="config overrides as a JSON object")
@click.option("--epochs", type=int, default=None)
@click.option("--force", is_flag=True, help="start from any status (never while a job is active)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--nproc-per-node", type=int, default=1, show_default=True,
              help="train with N processes (torchrun + DDP: one per GPU, or CPU processes); "
                   "see docs/distributed.md for several machines")
def train(project_id: str, config: str | None, epochs: int | None, force: bool,
          quiet: bool, nproc_per_node: int) -> None:
    """Run one training job in the foreground."""
    overrides = _json_option(config) or {}
    if epochs is not None:
        overrides["epochs"] = epochs
    container = _container()
    fail_stale_jobs(container)
    if nproc_per_node > 1:
        from .distributed import launch

        code = launch(project_id, nproc_per_node, overrides or None, force)
    else:
        job = container.training_service().start(project_id, overrides or None, force=force)
        click.echo(f"job {job.id} started", err=True)
        code = run_job_in_foreground(container, job.id, quiet)
    if code == 0:
        view = container.training_service().status(project_id)
        for line in metrics_lines(view.job) if view.job else []:
            click.echo(line)
        click.echo(f"model: {view.job.model_url if view.job else ''}")
    sys.exit(code)


@main.command()
@click.argument("project_id")
@click.option("--json", "as_json", is_flag=True)
def status(project_id: str, as_json: bool) -> None:
    """The project's status, its latest job and recent logs."""
    view = _container().training_service().status(project_id)
    if as_json:
        click.echo(view.model_dump_json(indent=2))
        return
    click.echo(f"project {view.project_id}: {view.project_status}")
    if view.job:
        j = view.job
        click.echo(f"job {j.id}: {j.state}" + (f" — {j.error}" if j.error else ""))
        progress = progress_line(j.progress)
        if progress and j.metrics is None:
            click.echo(progress)
        for line in metrics_lines(j):
            click.echo(line)
        if j.model_url:
            click.echo(f"model: {j.model_url}")
    for entry in view.recent_logs[:10]:
        click.echo(f"  {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.level:<7} {entry.message}")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]


def backbone_lines(page: BackbonePageView, query: str | None, everything: bool) -> list[str]:
    """`backbones` for people: the recommended few, or the matches by plugin."""
    in_all = sum(page.providers.values())
    counts = ", ".join(f"{name} {n}" for name, n in sorted(page.providers.items()))
    if not everything:
        lines = ["recommended backbones (set config.trainer and config.backbone; all have "
                 "pretrained weights):"]
        lines += ["  " + line for line in _table(
            [("size", "trainer", "backbone", "notes")]
            + [(b.size or "", b.provider, b.name, b.note or "") for b in page.recommended])]
        lines.append(f"{in_all} backbones in all ({counts}): search them with "
                     "`training-agent backbones FILTER` (e.g. resnet, '*_b0'), narrow with "
                     "--pretrained or --provider NAME, or list all with --all")
        return lines
    lines: list[str] = []
    shown = {}
    for b in page.backbones:
        shown.setdefault(b.provider, []).append(b)
    for provider, found in shown.items():
        lines.append(f"{provider} ({len(found)} of {page.providers[provider]}):")
        lines += ["  " + line for line in _table([
            (b.name, "pretrained" if b.pretrained else "no pretrained weights"
             if b.pretrained is False else "") for b in found])]
    what = f" matching {query!r}" if query else ""
    lines.append(f"{page.total} backbone{'s' if page.total != 1 else ''}{what}"
                 if page.total else f"no backbone{what} (of {in_all}: {counts})")
    return lines


@main.command()
@click.argument("query", metavar="[FILTER]", required=False)
@click.option("--pretrained", is_flag=True, help="only backbones with pretrained weights")
@click.option("--provider", default=None, metavar="NAME",
              help="only this trainer plugin's (torchvision, timm, ...)")
@click.option("--all", "everything", is_flag=True, help="list every backbone")
@click.option("--json", "as_json", is_flag=True, help="the matches as JSON")
def backbones(query: str | None, pretrained: bool, provider: str | None, everything: bool,
              as_json: bool) -> None:
    """The recommended backbones, or those matching FILTER (a part of the name, or a glob
    such as 'resnet*'); listed without importing the model libraries."""
    page = _container().training_service().find_backbones(query, provider, pretrained)
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    listing = everything or bool(query) or pretrained or provider is not None
    for line in backbone_lines(page, query, listing):
        click.echo(line)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, `localhost`)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--allow-unauthenticated", is_flag=True,
              help="listen beyond loopback without MCP_API_KEY (anyone who reaches the port "
                   "can start and cancel training)")
def serve(host: str, port: int, allow_unauthenticated: bool) -> None:
    """The HTTP API; jobs run in worker processes (at most MAX_CONCURRENT_JOBS at once).

    Beyond loopback it needs MCP_API_KEY, unless --allow-unauthenticated says otherwise."""
    settings = _settings()
    if not settings.mcp_api_key and not is_loopback(host) and not allow_unauthenticated:
        click.echo(f"error: refusing to serve on {host} without MCP_API_KEY: anyone who can "
                   "reach the port could start and cancel training; set MCP_API_KEY, listen "
                   "on 127.0.0.1, or pass --allow-unauthenticated", err=True)
        sys.exit(2)

    import uvicorn

    from .http import create_app

    container = _container()
    runner = build_runner(container, settings, agent_id("serve", port))
    app = create_app(container, runner, api_key=settings.mcp_api_key)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


@main.command()
@click.option("--interval", default=2.0, show_default=True, help="seconds between store polls")
@click.option("--grace", default=30.0, show_default=True,
              help="on SIGINT/SIGTERM, seconds running jobs get to finish before they are "
                   "stopped and failed")
def watch(interval: float, grace: float) -> None:
    """Claim and train pending_training projects as they appear (SIGINT/SIGTERM stop it)."""
    from .worker.watch import watch as watch_loop

    runner = build_runner(_container(), _settings(), agent_id("watch", os.getpid()))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.start()
    try:
        watch_loop(runner, stop, interval)
    finally:
        click.echo(f"stopping: running jobs get {grace:g}s to finish", err=True)
        runner.stop(wait=grace)


@main.command("mcp")
def mcp_command() -> None:
    """The MCP tool server on stdio (start_training, training_status, cancel_training,
    list_backbones)."""
    from .mcp_server import build_mcp_server

    container = _container()
    runner = build_runner(container, _settings(), agent_id("mcp", os.getpid()))
    # A client that ends the session by signalling the server (SIGTERM), or a closed terminal
    # (SIGHUP), must not kill it before it has stopped its workers and failed their jobs. The
    # stdio loop cannot be interrupted while it reads stdin, so a thread stops the runner and
    # then ends the process.
    stops = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    stopping = threading.Lock()

    def stop_then_exit(signum: int, _frame: object) -> None:
        for sig in (*stops, signal.SIGINT):  # a second signal must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)

        def work() -> None:
            with stopping:
                runner.stop()
            os._exit(128 + signum)

        threading.Thread(target=work, name="mcp-stop").start()

    for sig in stops:
        signal.signal(sig, stop_then_exit)
    runner.start()
    try:
        build_mcp_server(container.training_service(), runner).run("stdio")
    finally:
        for sig in (*stops, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        with stopping:
            runner.stop()


@main.group()
def db() -> None:
    """The metadata store."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the shipped migrations to the configured SQL store."""
    migrate = _container().schema_migrator()
    if migrate is None:  # Supabase: PostgREST cannot run DDL
        repo = _container().metadata_repo()
        click.echo(f"error: db migrate needs a SQL connection, and the configured metadata store "
                   f"({type(repo).__name__}) has none; apply supabase/migrations/ with "
                   "`supabase db push`, with psql, or with `DATABASE_URL=<the project's "
                   "Postgres connection string> training-agent db migrate` (docs/cloud.md)",
                   err=True)
        sys.exit(1)
    applied = migrate()
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied
                                                            else "; schema is up to date"))


if __name__ == "__main__":
    main()
