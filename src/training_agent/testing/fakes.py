"""A fake Trainer and a container that uses it: fast jobs for API, runner and MCP tests.

Both are importable by spawned worker processes, so a test hands the runner
`functools.partial(fake_container, settings, seconds_per_epoch=...)` as its worker factory."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from dependency_injector import providers

from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import InvalidConfig, TrainingError
from training_agent.domain.ports import (
    EpochProgress,
    ProgressSink,
    Trainer,
    TrainRequest,
    TrainResult,
)
from training_agent.entrypoints.container import Container, build_container
from training_agent.entrypoints.settings import Settings

BACKBONES = {"torchvision": ["mobilenet_v3_small", "resnet18"]}


class FakeTrainer(Trainer):
    """Walks the epochs of the config, reports progress, writes tiny artifacts.

    `seconds_per_epoch` makes a job last long enough to be watched, cancelled or killed;
    `fail_at_epoch` raises a TrainingError there."""

    def __init__(self, seconds_per_epoch: float = 0.0, fail_at_epoch: int | None = None,
                 accuracy: float = 0.875) -> None:
        self.seconds_per_epoch = seconds_per_epoch
        self.fail_at_epoch = fail_at_epoch
        self.accuracy = accuracy

    def train(self, request: TrainRequest, progress: ProgressSink) -> TrainResult:
        epochs = request.config.epochs
        images = len(request.splits.train)
        for epoch in range(1, epochs + 1):
            time.sleep(self.seconds_per_epoch)
            if epoch == self.fail_at_epoch:
                raise TrainingError(f"fake trainer failed at epoch {epoch}")
            progress(EpochProgress(
                epoch=epoch, epochs=epochs, train_loss=1.0 / epoch,
                val_accuracy=self.accuracy * epoch / epochs, images_per_second=images / 0.01,
                eta_seconds=(epochs - epoch) * self.seconds_per_epoch,
            ))
        request.out_dir.mkdir(parents=True, exist_ok=True)
        weights = request.out_dir / "model.pth"
        weights.write_bytes(b"fake weights for " + request.job_id.encode())
        manifest = request.out_dir / "manifest.json"
        manifest.write_text(json.dumps({"trainer": "fake", "class_names":
                                        request.splits.class_names}))
        return TrainResult(
            accuracy=self.accuracy, metrics={"val_accuracy": self.accuracy},
            epochs_run=epochs, backbone=request.config.backbone, trainer="fake",
            class_names=request.splits.class_names,
            artifacts={"model.pth": weights, "manifest.json": manifest},
            weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
        )

    def backbones(self) -> dict[str, list[str]]:
        return BACKBONES

    def check_config(self, config: TrainingConfig) -> None:
        if config.backbone not in BACKBONES.get(config.trainer, []):
            raise InvalidConfig(f"backbone: unknown backbone {config.backbone!r} for trainer "
                                f"{config.trainer!r}")


def fake_container(settings: Settings, **trainer_options: Any) -> Container:
    """The real container with the FakeTrainer in place of PyTorch."""
    container = build_container(settings)
    container.trainer.override(providers.Object(FakeTrainer(**trainer_options)))
    return container
