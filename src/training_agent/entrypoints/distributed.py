"""Distributed training of one job under torchrun: rank 0 claims the job and owns every write;
the other ranks train their share and write nothing.

    training-agent train PROJECT_ID --nproc-per-node 2            (one machine)
    python -m training_agent.entrypoints.distributed PROJECT_ID --nproc-per-node 2 \\
        --nnodes 2 --node-rank 0 --rdzv-endpoint host:29400 --rdzv-id job42  (see docs/distributed.md)

`launch` starts `torch.distributed.run` (torchrun) with this module as each rank's program;
`run_rank` is what each rank does: join the process group, rank 0 starts (claims) the job and
broadcasts its id, every rank runs it through the same TrainingService, the non-zero ranks with
a metadata store, notifier and blob store that write nothing and a work folder of their own."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training_agent.domain.errors import TrainingAgentError
from training_agent.domain.models import JobState, ProjectStatus, TrainingJob
from training_agent.domain.ports import BlobStore, MetadataRepo, Notification, Notifier
from training_agent.domain.service import TrainingService

log = logging.getLogger("training_agent.distributed")
DEFAULT_FACTORY = "training_agent.entrypoints.distributed:container_service"


class FollowerRepo(MetadataRepo):
    """Reads through to the real store; writes nothing (rank 0 owns the job's state)."""

    def __init__(self, inner: MetadataRepo) -> None:
        self.inner = inner

    def ping(self) -> None:
        self.inner.ping()

    def add_project(self, project: Any) -> Any:
        raise TrainingAgentError("a follower rank creates no projects")

    def get_project(self, project_id: str) -> Any:
        return self.inner.get_project(project_id)

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Any, TrainingJob | None]]:
        return self.inner.list_projects(limit, offset)

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        return None

    def add_dataset(self, dataset: Any) -> Any:
        raise TrainingAgentError("a follower rank adds no datasets")

    def latest_dataset(self, project_id: str) -> Any:
        return self.inner.latest_dataset(project_id)

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        return None  # rank 0 records it

    def claim_job(self, job: TrainingJob, allowed: Any) -> TrainingJob:
        raise TrainingAgentError("a follower rank claims no jobs")

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        return None

    def get_job(self, job_id: str) -> TrainingJob:
        # the follower walks its own copy of the job from the start, whatever step rank 0 is at
        return self.inner.get_job(job_id).model_copy(update={"state": JobState.QUEUED})

    def latest_job(self, project_id: str) -> TrainingJob | None:
        return self.inner.latest_job(project_id)

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        return self.inner.job_for_idempotency_key(key)

    def save_job(self, job: TrainingJob) -> bool:
        return True  # cancellation reaches followers from rank 0 through the process group

    def active_jobs(self) -> list[TrainingJob]:
        return self.inner.active_jobs()

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        return True  # rank 0 beats for the job

    def record_model(self, model: Any, job: TrainingJob) -> None:
        return None

    def list_models(self, project_id: str) -> list[Any]:
        return self.inner.list_models(project_id)

    def add_log(self, entry: Any) -> None:
        # not stored (rank 0 writes the job's logs), but a follower's own failure must be seen
        if entry.level in ("warning", "error"):
            log.warning("rank %s: %s", os.environ.get("RANK", "?"), entry.message)

    def recent_logs(self, project_id: str, limit: int = 20) -> list[Any]:
        return self.inner.recent_logs(project_id, limit)


class SilentNotifier(Notifier):
    def notify(self, notification: Notification) -> None:
        return None


class ReadOnlyBlobs(BlobStore):
    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner

    def download(self, url: str, dest: Path) -> int:
        return self.inner.download(url, dest)

    def upload(self, src: Path, url: str) -> str:
        raise TrainingAgentError("a follower rank uploads nothing")


def follower(service: TrainingService, rank: int) -> TrainingService:
    return dataclasses.replace(
        service, repo=FollowerRepo(service.repo), notifier=SilentNotifier(),
        blobs=ReadOnlyBlobs(service.blobs), work_root=service.work_root / f"rank-{rank}",
    )


def run_rank(service: TrainingService, project_id: str, overrides: dict[str, Any] | None = None,
             force: bool = False,
             on_progress: Callable[[TrainingJob], None] | None = None) -> TrainingJob:
    """One rank's part of a distributed job (inside torchrun). Returns the job as this rank
    last saw it: rank 0's is the real one."""
    import torch
    import torch.distributed as dist

    from training_agent.adapters.trainers import environment
    from training_agent.adapters.trainers.distributed import init_process_group

    use_cuda = torch.cuda.is_available() and (overrides or {}).get("device", "auto") != "cpu"
    if use_cuda:
        torch.cuda.set_device(environment.current().local_rank)
    init_process_group(use_cuda)
    rank = dist.get_rank()
    try:
        box: list[Any] = [None]
        if rank == 0:
            try:
                box[0] = service.start(project_id, overrides, force=force).id
            except Exception as exc:  # every rank must hear why nothing will run
                box[0] = exc
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], Exception):
            raise box[0]
        job_id = str(box[0])
        if rank == 0:
            return run_primary(service, job_id, on_progress)
        return follower(service, rank).run(job_id)
    finally:
        dist.destroy_process_group()


def run_primary(service: TrainingService, job_id: str,
                on_progress: Callable[[TrainingJob], None] | None = None) -> TrainingJob:
    """Rank 0 runs the job as `training-agent train` does (worker.process.run_job_here).
    Ctrl-C reaches every rank (SIGINT); torchrun's agent passes a signal it got on (SIGTERM):
    either ends the job failed ("interrupted by SIGINT"), and is raised again for torchrun."""
    from .worker.process import run_job_here
    from .worker.runner import agent_id

    outcome = run_job_here(service, job_id, f"{agent_id('torchrun')}/rank0/pid:{os.getpid()}",
                           on_progress=on_progress)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.job is not None
    return outcome.job


def container_service() -> TrainingService:
    """The service the composition root builds (the default factory)."""
    from training_agent.entrypoints.container import build_container

    return build_container().training_service()


def _factory(spec: str) -> Callable[[], TrainingService]:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def launch(project_id: str, nproc_per_node: int, config: dict[str, Any] | None = None,
           force: bool = False, torchrun_args: Sequence[str] = (),
           service_factory: str = DEFAULT_FACTORY) -> int:
    """Start torchrun with `nproc_per_node` ranks of this job on this machine (plus any
    rendezvous options for more machines); returns its exit status."""
    from torch.distributed.run import get_args_parser, run

    multi_node = any(a.startswith(("--nnodes", "--rdzv")) for a in torchrun_args)
    argv = [*([] if multi_node else ["--standalone"]), f"--nproc-per-node={nproc_per_node}",
            *torchrun_args, "-m", "training_agent.entrypoints.distributed", "--worker",
            project_id, "--service-factory", service_factory]
    if config:
        argv += ["--config", json.dumps(config)]
    if force:
        argv.append("--force")
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        run(get_args_parser().parse_args(argv))
    except SignalException as exc:  # Ctrl-C or SIGTERM: rank 0 has failed the job
        print(f"distributed training interrupted by {exc.sigval.name}", file=sys.stderr)
        return 128 + int(exc.sigval)
    except Exception as exc:  # torchrun's ChildFailedError names the failing rank
        print(f"distributed training failed: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_agent.entrypoints.distributed")
    parser.add_argument("project_id")
    parser.add_argument("--config", default=None, help="JSON object of config overrides")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--service-factory", default=DEFAULT_FACTORY)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args, torchrun_args = parser.parse_known_args(argv)
    config = json.loads(args.config) if args.config else None
    if not args.worker:
        return launch(args.project_id, args.nproc_per_node, config, args.force, torchrun_args,
                      args.service_factory)
    # a rank's process: torchrun's variables (and the rest of the settings) reach the trainer
    # adapters here, whichever factory builds the service
    from training_agent.adapters.trainers import environment
    from training_agent.entrypoints.settings import Settings, trainer_environment

    environment.configure(**trainer_environment(Settings()))
    job = run_rank(_factory(args.service_factory)(), args.project_id, config, args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"job_id": job.id, "state": job.state.value, "error": job.error}))
        return 0 if job.state.value == "succeeded" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
