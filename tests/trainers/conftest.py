"""Fixtures for the trainer tests: tiny real datasets, requests and a recording progress sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training_agent.domain.archive import open_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import DatasetSplits, EpochProgress, TrainRequest
from training_agent.testing.datasets import make_dataset_zip

torch.set_num_threads(2)

TINY = {"pretrained": False, "epochs": 2, "batch_size": 16, "image_size": 32}


def splits_of(zip_path: Path, dest: Path, seed: int = 0) -> DatasetSplits:
    return open_dataset(zip_path, dest, 0.15, seed)


def make_request(tmp: Path, splits: DatasetSplits, checkpoint_dir: Path | None = None,
                 **config: Any) -> TrainRequest:
    return TrainRequest(
        job_id="job-1", project_id="project-1", project_name="shapes",
        config=TrainingConfig(**{**TINY, **config}), splits=splits, work_dir=tmp / "work",
        checkpoint_dir=checkpoint_dir or tmp / "checkpoints", out_dir=tmp / "out",
        dataset_url="file:///data/shapes.zip", dataset_sha256="0" * 64,
    )


class Recorder:
    """A progress sink that keeps every report; can cancel after a given epoch."""

    def __init__(self, cancel_after_epoch: int | None = None) -> None:
        self.events: list[EpochProgress] = []
        self.cancel_after_epoch = cancel_after_epoch

    def __call__(self, p: EpochProgress) -> None:
        from training_agent.domain.errors import JobCancelled

        self.events.append(p)
        if p.step is None and p.message is None and p.epoch == self.cancel_after_epoch:
            raise JobCancelled("job-1")

    @property
    def epochs(self) -> list[EpochProgress]:
        return [e for e in self.events if e.step is None and e.message is None]

    @property
    def messages(self) -> list[str]:
        return [e.message for e in self.events if e.message]


@pytest.fixture
def tiny_splits(tmp_path: Path) -> DatasetSplits:
    zip_path = make_dataset_zip(tmp_path / "shapes.zip", classes=3,
                                per_class={"train": 12, "val": 4, "test": 4})
    return splits_of(zip_path, tmp_path / "data")


# These train real (tiny) models; `scripts/test -m "not slow"` leaves them out. The registry
# and weight-loading tests train nothing.
QUICK_MODULES = {"test_trainer_registry.py", "test_trainer_weights.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name not in QUICK_MODULES:
            item.add_marker(pytest.mark.slow)
