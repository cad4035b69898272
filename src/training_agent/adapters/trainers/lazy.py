"""A Trainer that builds the real one on first use, so status, HTTP and MCP start without torch.

Given the plugin registry, it answers backbone questions (the catalog, config checks) from the
registry without building the real trainer: listing backbones never imports torch when the
catalog is cached (catalog.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import (
    BackboneInfo,
    ProgressSink,
    Trainer,
    TrainRequest,
    TrainResult,
)

from .registry import PluginRegistry


class LazyTrainer(Trainer):
    def __init__(self, factory: Callable[[], Trainer],
                 registry: Callable[[], PluginRegistry] | None = None) -> None:
        self._factory = factory
        self._registry = registry
        self._trainer: Trainer | None = None
        self._lock = threading.Lock()

    @property
    def real(self) -> Trainer:
        # Concurrent first requests (the HTTP API runs handlers on threads) wait for one build.
        if self._trainer is None:
            with self._lock:
                if self._trainer is None:
                    self._trainer = self._factory()
        return self._trainer

    def train(self, request: TrainRequest, progress: ProgressSink) -> TrainResult:
        return self.real.train(request, progress)

    def backbones(self) -> dict[str, list[str]]:
        if self._registry is not None:
            return self._registry().backbones()
        return self.real.backbones()

    def backbone_catalog(self) -> list[BackboneInfo]:
        if self._registry is not None:
            return self._registry().catalog()
        return self.real.backbone_catalog()

    def check_config(self, config: TrainingConfig) -> None:
        if self._registry is not None:
            self._registry().check(config.trainer, config.backbone)
            return
        self.real.check_config(config)
