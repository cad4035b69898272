"""One training run, built whole from its parts: the context (run_context.py), the decoded
data (run_data.py), the learner (learner.py), the reports (reporting.py) and the epoch loop
(epoch_loop.py); `execute` trains, then tests the handed-back weights and writes the
artifacts (results.py)."""

from __future__ import annotations

import time

import torch

from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import ProgressSink, TrainRequest, TrainResult

from .epoch_loop import EpochLoop
from .images import auto_image_size
from .learner import Learner
from .registry import InputSpec, PluginRegistry
from .reporting import Reports
from .results import finish
from .run_context import RunContext
from .run_data import RunData
from .sources import source_of


def image_size_for(cfg: TrainingConfig, spec: InputSpec, request: TrainRequest) -> int:
    """`image_size: auto`: the backbone's pretrained size, or from scratch one that suits the
    training images (images.auto_image_size); never under the architecture's minimum."""
    size = cfg.image_size
    if size == "auto":
        locate = source_of(request.splits)
        size = spec.image_size if cfg.pretrained else auto_image_size(
            [locate(p) for p, _ in request.splits.train])
    return max(int(size), spec.min_size)


class TrainingRun:
    """Set up on construction (decode, model, optimizer, resume); `execute` runs it."""

    def __init__(self, registry: PluginRegistry, request: TrainRequest, progress: ProgressSink,
                 cache_bytes: int, threads: int, overlap: bool | None = None) -> None:
        cfg = request.config
        self.ctx = RunContext.create(request, progress, threads)
        provider = registry.check(cfg.trainer, cfg.backbone)
        spec = provider.input_spec(cfg.backbone, cfg.pretrained)
        image_size = image_size_for(cfg, spec, request)
        torch.manual_seed(cfg.seed)
        t0 = time.monotonic()
        model = provider.build(cfg.backbone, len(request.splits.class_names), cfg.pretrained,
                               image_size)
        built = time.monotonic() - t0
        self.data = RunData.load(self.ctx, image_size, cache_bytes, overlap)
        try:  # the training cache may still be filling (filling.py) from here on
            self.reports = Reports(self.ctx, self.data, image_size)
            t0 = time.monotonic()
            self.learner = Learner.build(self.ctx, model, spec, image_size, self.data)
            # the model, its device, the batch probe, the optimizer (and resumed weights)
            self.ctx.timings["model_seconds"] = round(built + time.monotonic() - t0, 3)
            self.loop = EpochLoop(self.ctx, self.data, self.learner,
                                  lambda: self.reports.finish_dataset_check(wait=False))
            self.reports.begin_dataset_check()  # now, unless the training cache still fills
        except BaseException:
            self.data.close()
            raise

    def execute(self) -> TrainResult | None:
        """Train and hand back the result: rank 0's; None on the other ranks."""
        try:
            self.loop.run()
            return finish(self.loop, self.reports)
        finally:
            self.data.close()


__all__ = ["TrainingRun", "image_size_for"]
