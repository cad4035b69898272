"""A Trainer that builds the real one on first use, so status, HTTP and MCP start without torch."""

from __future__ import annotations

import threading
from collections.abc import Callable

from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import ProgressSink, Trainer, TrainRequest, TrainResult


class LazyTrainer(Trainer):
    def __init__(self, factory: Callable[[], Trainer]) -> None:
        self._factory = factory
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
        return self.real.backbones()

    def check_config(self, config: TrainingConfig) -> None:
        self.real.check_config(config)
