"""Distributed training of one job under torchrun: rank 0 claims the job and owns every write;
the other ranks train their share and write nothing.

    training-agent train PROJECT_ID --nproc-per-node 2            (one machine)
    python -m training_agent.entrypoints.distributed PROJECT_ID --nproc-per-node 2 \\
        --nnodes 2 --node-rank 0 --rdzv-endpoint host:29400 --rdzv-id job42  (see docs/distributed.md)

`launch` starts `torch.distributed.run` (torchrun) with this module as each rank's program;
`run_rank` is what each rank does: rank 0 starts (claims) the job and runs it through the
TrainingService like any job; its trainer hands the training request to the other ranks, which
run only the training loop (adapters/trainers/ranks.py)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training_agent.domain import archive
from training_agent.domain.errors import TrainingAgentError
from training_agent.domain.models import TrainingJob
from training_agent.domain.ports import TrainRequest
from training_agent.domain.service import TrainingService, sha256_of

DEFAULT_FACTORY = "training_agent.entrypoints.distributed:container_service"


def run_rank(service: TrainingService, project_id: str, overrides: dict[str, Any] | None = None,
             force: bool = False,
             on_progress: Callable[[TrainingJob], None] | None = None) -> TrainingJob | None:
    """One rank's part of a distributed job (inside torchrun). Rank 0 starts (claims) the job
    and runs it through `service`, and returns it; the other ranks run only the training loop
    on the request rank 0's trainer hands them (adapters/trainers/ranks.py), and return None."""
    from training_agent.adapters.trainers import ranks

    joined = ranks.join()
    try:
        if not joined.primary:
            job_id = joined.share(None)  # None: rank 0's start was refused
            if job_id is not None:
                follow(service, joined.rank, job_id, joined.receive())
            return None
        try:
            job_id = joined.share(service.start(project_id, overrides, force=force).id)
        except Exception:  # every rank must hear that nothing will run
            joined.share(None)
            raise
        try:
            return run_primary(service, job_id, on_progress)
        finally:
            joined.hand_over(None)  # the job ended before training: the followers stop too
    finally:
        ranks.leave()


def follow(service: TrainingService, rank: int, job_id: str,
           request: TrainRequest | None) -> None:
    """A follower rank: train alongside rank 0, on rank 0's dataset zip where this rank
    can read it (the same machine or a shared disk), else on its own copy (`local_request`)."""
    if request is None:
        return  # rank 0's job ended before training
    follow_job = getattr(service.trainer, "follow", None)  # PyTorchTrainer's, or LazyTrainer's
    if follow_job is None:
        raise TrainingAgentError(f"distributed training needs the PyTorch trainer, not "
                                 f"{type(service.trainer).__name__}")
    work = service.work_root / f"rank-{rank}" / job_id
    try:
        follow_job(local_request(service, request, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def local_request(service: TrainingService, request: TrainRequest, work: Path) -> TrainRequest:
    """The request as a follower runs it. Where rank 0's dataset zip is not readable here
    (another machine), the dataset is downloaded from its URL into `work` and indexed with
    the same intake, and must be the same zip (sha256)."""
    splits = request.splits
    readable = splits.archive.is_file() if splits.archive else splits.root.is_dir()
    if readable:
        return request
    work.mkdir(parents=True, exist_ok=True)
    zip_path = work / "dataset.zip"
    service.blobs.download(request.dataset_url, zip_path)
    if sha256_of(zip_path) != request.dataset_sha256:
        raise TrainingAgentError(f"dataset {request.dataset_url} changed while the job ran "
                                 "(its sha256 differs from rank 0's)")
    cfg = request.config
    splits = archive.open_dataset(zip_path, work / "data", cfg.val_fraction, cfg.seed,
                                  service.limits)
    return request.model_copy(update={"splits": splits})


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
    if job is None:  # a follower
        return 0
    print(json.dumps({"job_id": job.id, "state": job.state.value, "error": job.error}))
    return 0 if job.state.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
