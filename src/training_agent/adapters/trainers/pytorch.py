"""PyTorchTrainer: the one training loop shared by every backbone plugin (the Trainer port)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch

from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import DatasetInvalid, TrainingError
from training_agent.domain.ports import (
    BackboneInfo,
    ProgressSink,
    Trainer,
    TrainRequest,
    TrainResult,
)

from . import environment
from .data import default_cache_budget
from .registry import PluginRegistry, default_registry
from .sources import release


def _load_plotting() -> None:
    from .artifacts import pyplot

    with contextlib.suppress(Exception):  # the plots report what fails, when they are made
        pyplot()


def warm_gpu_libraries() -> None:
    """One tiny training step on the GPU (bf16 convolution, BatchNorm, pooling, a matmul,
    backward, a fused AdamW step): the first such step of a process loads cuDNN and cuBLAS
    and their kernels, seconds that otherwise fall on the model's set-up (bench/
    setup_probe.py measures both). On this process's GPU (its local rank's under torchrun)."""
    dev = torch.device("cuda", environment.current().local_rank % torch.cuda.device_count())
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 4)).to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x).float(), torch.zeros(4, dtype=torch.long,
                                                                           device=dev))
    loss.backward()
    torch.optim.AdamW(net.parameters(), fused=True).step()
    torch.cuda.synchronize()


def _warm_gpu() -> None:
    with contextlib.suppress(Exception):  # a real step says what fails, when it comes
        warm_gpu_libraries()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class PyTorchTrainer(Trainer):
    """Trains any registered backbone. `registry` defaults to the installed plugins;
    `cache_bytes` is the decoded-image memory budget (default: see data.default_cache_budget);
    `threads` the CPU threads this process may use (default: its share of the cores);
    `on_ready(run)` is called with each run (loop.TrainingRun: its `ctx`, `data`, `learner`,
    `loop`) once it is set up, before the first step (what a benchmark or a test observes);
    `overlap` whether a cached training split fills while the first epoch trains (default:
    the `TRAINING_AGENT_OVERLAP` setting; unset, when training on CUDA; see filling.py)."""

    def __init__(self, registry: PluginRegistry | None = None, cache_bytes: int | None = None,
                 threads: int | None = None,
                 on_ready: Callable[[Any], None] | None = None,
                 overlap: bool | None = None) -> None:
        self.registry = registry or default_registry()
        self.overlap = overlap
        self.cache_bytes = cache_bytes
        self.threads = threads
        self.on_ready = on_ready

    def backbones(self) -> dict[str, list[str]]:
        return self.registry.backbones()

    def check_config(self, config: TrainingConfig) -> None:
        self.registry.check(config.trainer, config.backbone)

    def backbone_catalog(self) -> list[BackboneInfo]:
        return self.registry.catalog()

    def warm_up(self) -> None:
        """Import what a run needs to start: the loop (torch), torchvision (the default
        backbones and the decoders), and the GPU's context where there is one, then its
        libraries (cuDNN, cuBLAS) on a thread of their own (`warm_gpu_libraries`); matplotlib
        (whose first import in a fresh environment builds its font cache) goes on loading on a
        thread of its own, as the plots come only at the end. Other plugins' libraries load
        when a job uses them."""
        import threading

        from . import loop  # noqa: F401

        with contextlib.suppress(ImportError):
            import torchvision  # noqa: F401
        # not daemons: a process that ends meanwhile waits for them, never cuts them short
        if torch.cuda.is_available():
            torch.cuda.init()
            # the GPU libraries load on a thread of their own, which `train` does not wait
            # for: the first real step waits only for what is not loaded yet
            threading.Thread(target=_warm_gpu, name="gpu-warm-up").start()
        threading.Thread(target=_load_plotting, name="plotting-warm-up").start()

    def train(self, request: TrainRequest, progress: ProgressSink) -> TrainResult:
        """Train on this process; under torchrun (rank 0), the other ranks get the request
        and train alongside (ranks.py)."""
        from .ranks import joined as joined_ranks

        joined = joined_ranks()
        if joined is not None:
            joined.hand_over(request)
        result = self._run(request, progress)
        assert result is not None  # rank 0 or a single process
        return result

    def follow(self, request: TrainRequest) -> None:
        """A follower rank's part of rank 0's job: the training loop on this rank's share of
        the data; rank 0 reports, writes and uploads."""
        self._run(request, lambda progress: None)

    def _run(self, request: TrainRequest, progress: ProgressSink) -> TrainResult | None:
        from .loop import TrainingRun

        budget = self.cache_bytes if self.cache_bytes is not None else default_cache_budget()
        try:
            run = TrainingRun(self.registry, request, progress, budget,
                              self.threads or cpu_count(),
                              environment.current().overlap if self.overlap is None
                              else self.overlap)
            if self.on_ready is not None:
                self.on_ready(run)
            return run.execute()
        except (TrainingError, DatasetInvalid):
            raise
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory: {exc}; lower batch_size or image_size") from None
        finally:  # the zip's map: its space is freed when the job's folder goes
            release(request.splits.archive)
