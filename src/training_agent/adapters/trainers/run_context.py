"""What every part of a training run reads: the request, the device, the ranks, the threads,
the timings, and the one way progress goes out (rank 0's sink; every rank learns whether the
job was cancelled)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import JobCancelled, TrainingError
from training_agent.domain.ports import EpochProgress, ProgressSink, TrainRequest

from . import environment
from .clock import start_timings
from .distributed import DistContext


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} asked for, but no CUDA GPU is available")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


@dataclass
class RunContext:
    req: TrainRequest
    sink: ProgressSink
    device: torch.device
    dist: DistContext
    threads: int  # this process's share of the cores
    timings: dict[str, float]
    t_start: float = field(default_factory=time.monotonic)
    # (epochs done, epochs planned), where a message is said: the epoch loop's, once it exists
    position: Callable[[], tuple[int, int]] = lambda: (0, 0)

    @classmethod
    def create(cls, req: TrainRequest, sink: ProgressSink, threads: int) -> RunContext:
        """Pick the device, join the ranks (torchrun's, if any), take this process's share of
        the `threads`."""
        t_start = time.monotonic()
        device = pick_device(req.config.device, environment.current().local_rank)
        dist = DistContext.from_env(device.type == "cuda")
        threads = max(1, threads // dist.local_world)
        torch.set_num_threads(threads)
        return cls(req, sink, device, dist, threads, start_timings(req.timings), t_start)

    @property
    def cfg(self) -> TrainingConfig:
        return self.req.config

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def report(self, progress: EpochProgress, over_budget: bool = False) -> bool:
        """Rank 0's sink gets `progress`; every rank raises JobCancelled when the job was
        cancelled, and returns whether rank 0 found the time budget spent: one small
        all-reduce, so every rank stops at the same step."""
        flags = torch.zeros(2)
        if self.dist.primary:
            try:
                self.sink(progress)
            except JobCancelled:
                flags[0] = 1
            flags[1] = float(over_budget)
        flags = self.dist.max(flags)
        if flags[0]:
            raise JobCancelled(self.req.job_id)
        return bool(flags[1])

    def say(self, message: str) -> None:
        """A line for the job's log (rank 0 only)."""
        if self.dist.primary:
            done, planned = self.position()
            self.sink(EpochProgress(epoch=done, epochs=planned, message=message, step=0,
                                    steps=0))
