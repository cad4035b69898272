"""Hand-written fakes that implement the ports (the in-memory adapters cover the others)."""

from __future__ import annotations

import json
import time
from typing import Any

from dependency_injector import providers

from training_agent.domain.errors import TrainingError
from training_agent.domain.ports import EpochProgress, Trainer, TrainRequest, TrainResult
from training_agent.domain.service import sha256_of
from training_agent.entrypoints.container import Container, build_container
from training_agent.entrypoints.settings import Settings


class FakeTrainer(Trainer):
    """Reports each epoch, then writes tiny artifacts; can fail or sleep on demand."""

    def __init__(self, fail_with: Exception | None = None, epoch_seconds: float = 0.0,
                 accuracy: float = 0.75, metrics: dict[str, Any] | None = None) -> None:
        self.fail_with = fail_with
        self.epoch_seconds = epoch_seconds
        self.accuracy = accuracy
        self.metrics = metrics or {}  # merged over the default metrics
        self.requests: list[TrainRequest] = []

    def train(self, request: TrainRequest, progress) -> TrainResult:  # type: ignore[no-untyped-def]
        self.requests.append(request)
        cfg = request.config
        epochs = min(3, cfg.max_epochs) if cfg.epochs == "auto" else cfg.epochs  # auto: 3
        for epoch in range(1, epochs + 1):
            time.sleep(self.epoch_seconds)
            if self.fail_with is not None:
                raise self.fail_with
            progress(EpochProgress(epoch=epoch, epochs=epochs, train_loss=1.0 / epoch,
                                   val_accuracy=self.accuracy, images_per_second=100.0,
                                   eta_seconds=(epochs - epoch) * self.epoch_seconds))
        out = request.out_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pth").write_bytes(b"fake weights")
        (out / "manifest.json").write_text(json.dumps({"class_names": request.splits.class_names}))
        return TrainResult(
            accuracy=self.accuracy, metrics={
                "val_accuracy": self.accuracy, "best_epoch": epochs, "epochs_run": epochs,
                "stop_reason": "epochs",
                "per_class": {name: {"precision": self.accuracy, "recall": self.accuracy}
                              for name in request.splits.class_names},
                **self.metrics},
            epochs_run=epochs, backbone=request.config.backbone, trainer="fake",
            class_names=request.splits.class_names,
            artifacts={"model.pth": out / "model.pth", "manifest.json": out / "manifest.json"},
            weights_sha256=sha256_of(out / "model.pth"),
        )

    def backbones(self) -> dict[str, list[str]]:
        return {"fake": ["tiny"]}

    def check_config(self, config) -> None:  # type: ignore[no-untyped-def]
        if config.backbone == "no-such-backbone":
            from training_agent.domain.errors import InvalidConfig

            raise InvalidConfig("unknown backbone 'no-such-backbone'")


class ExplodingTrainer(FakeTrainer):
    def __init__(self) -> None:
        super().__init__(fail_with=TrainingError("loss became NaN at epoch 1"))


def fake_container(settings: Settings, **trainer_options: Any) -> Container:
    """The real container with a FakeTrainer: module-level, so spawned worker processes can
    build it too (the runner gets `functools.partial(fake_container, settings, ...)`)."""
    container = build_container(settings)
    container.trainer.override(providers.Object(FakeTrainer(**trainer_options)))
    return container
