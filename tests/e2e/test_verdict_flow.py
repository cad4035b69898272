"""Real training through the service: random labels end with a chance-level verdict everywhere
a person or a program looks (agent_logs, status view, notification, models row); a learnable
dataset does not. Tiny: 32 px, a few dozen images, 2-3 epochs of ResNet-18 on the CPU."""

from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path

import pytest

from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.models import JobState, ProjectStatus
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import draw_sample, encode, make_dataset_zip

pytestmark = pytest.mark.slow

DATASET_URL = "mem://datasets/data.zip"
CONFIG = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 16}


def random_label_zip(path: Path, classes: int, per_class: dict[str, int], seed: int = 0) -> Path:
    """Balanced class folders whose images are drawn from a random class each: the folder (the
    label) says nothing about the picture, so no model can beat chance on the test split."""
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in per_class.items():
            for c in range(classes):
                for i in range(n):
                    image = draw_sample(rng.randrange(classes), 32, rng)
                    zf.writestr(f"{split}/class_{c}/{i:04d}.jpg", encode(image))
    return path


def train(tmp_path: Path, archive: Path, epochs: int):
    repo, blobs, notifier = InMemoryMetadataRepo(), InMemoryBlobStore(), InMemoryNotifier()
    blobs.put(DATASET_URL, archive.read_bytes())
    service = TrainingService(repo=repo, blobs=blobs, trainer=PyTorchTrainer(),
                              notifier=notifier, model_store_url="mem://models",
                              work_root=tmp_path / "home")
    project = service.create_project("pets", DATASET_URL, {**CONFIG, "epochs": epochs})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.SUCCEEDED, job.error
    return service, repo, notifier, project


def test_random_labels_end_with_a_chance_verdict_in_log_status_notification_and_model(
        tmp_path):
    archive = random_label_zip(tmp_path / "random.zip", 4,
                               {"train": 16, "val": 4, "test": 8})
    service, repo, notifier, project = train(tmp_path, archive, epochs=2)

    # still saved and recorded: the verdict informs, it does not fail the job
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    [model] = repo.list_models(project.id)
    verdict = model.metadata["metrics"]["verdict"]
    assert verdict["level"] == "chance", verdict
    # at or under chance "has not learned"; a little above it by luck (9 of 32 right, say)
    # "may not have learned" (verdict.py): both the chance level, in words
    assert "for 4 classes" in verdict["text"]
    assert re.search(r"the model (has not|may not have) learned", verdict["text"]), verdict
    assert set(model.metadata["metrics"]) >= {"test_accuracy", "val_accuracy", "per_class",
                                              "epochs_run", "stop_reason", "verdict",
                                              "best_epoch"}

    final = repo.recent_logs(project.id, 1)[0]
    assert final.level == "warning" and final.message.startswith(
        "training complete; status pending_evaluation — ⚠️ ")
    assert verdict["text"] in final.message

    [note] = notifier.sent
    assert note.ok and note.mark == "⚠️" and note.details["verdict"] == verdict
    assert "not clearly better than chance" in note.message and verdict["text"] in note.message

    view = service.status(project.id)
    assert view.job.metrics.verdict.level == "chance"
    assert view.job.metrics.epochs_run == 2 and view.job.metrics.test_accuracy is not None
    assert set(view.job.metrics.per_class) == {f"class_{c}" for c in range(4)}
    assert verdict["text"] in view.job.summary


def test_a_learnable_dataset_is_not_called_chance(tmp_path):
    archive = make_dataset_zip(tmp_path / "shapes.zip", classes=3, size=32,
                               per_class={"train": 24, "val": 6, "test": 12})
    service, repo, notifier, project = train(tmp_path, archive, epochs=3)

    [model] = repo.list_models(project.id)
    verdict = model.metadata["metrics"]["verdict"]
    assert verdict["level"] != "chance", verdict
    assert "chance level" not in repo.recent_logs(project.id, 1)[0].message
    [note] = notifier.sent
    assert note.message.startswith("Training complete: pets reached accuracy")
    assert service.status(project.id).job.metrics.verdict.level == verdict["level"]
