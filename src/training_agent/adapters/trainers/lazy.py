"""A Trainer that builds the real one on first use, so status, HTTP and MCP start without torch.

Given the plugin registry, it answers backbone questions (the catalog, config checks) from the
registry without building the real trainer: listing backbones never imports torch when the
catalog is cached (catalog.py).

`warm_up` (called by the service when a job starts) builds the real trainer and loads its
libraries (torch, the models, matplotlib) on a background thread while the job downloads and
extracts its dataset; `train` waits for it and records the wait as the manifest's
`timings.trainer_load_wait_seconds`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import TrainingError
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
        self._warming: threading.Thread | None = None

    @property
    def real(self) -> Trainer:
        # Concurrent first requests (the HTTP API runs handlers on threads) wait for one build.
        if self._trainer is None:
            with self._lock:
                if self._trainer is None:
                    self._trainer = self._factory()
        return self._trainer

    def warm_up(self) -> None:
        if self._warming is not None or self._trainer is not None:
            return
        # not a daemon: a process that ends meanwhile waits for the import, never cuts it
        self._warming = threading.Thread(target=self._warm, name="trainer-warm-up")
        self._warming.start()

    def _warm(self) -> None:
        try:
            self.real.warm_up()
        except Exception:  # `train` builds it again and reports what fails
            pass

    def train(self, request: TrainRequest, progress: ProgressSink) -> TrainResult:
        t0 = time.monotonic()
        if self._warming is not None:
            self._warming.join()
        real = self.real
        timings = {**request.timings, "trainer_load_wait_seconds": round(time.monotonic() - t0, 3)}
        return real.train(request.model_copy(update={"timings": timings}), progress)

    def follow(self, request: TrainRequest) -> None:
        """A follower rank's part of a distributed job (ranks.py), by the real trainer."""
        follow = getattr(self.real, "follow", None)
        if follow is None:
            raise TrainingError(f"{type(self.real).__name__} cannot train as a follower rank")
        follow(request)

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
