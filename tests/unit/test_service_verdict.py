"""The service's success path by verdict: log row, notification, models row, status view.

The trainer here is the FakeTrainer reporting given metrics; tests/e2e/test_verdict_flow.py
trains real models on random and learnable labels."""

from __future__ import annotations

import pytest

from tests.fakes import ExplodingTrainer, FakeTrainer
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.models import JobState, ProjectStatus
from training_agent.domain.service import TrainingService

DATASET_URL = "mem://datasets/shapes.zip"
CLASSES = ["class_a", "class_b", "class_c"]


def trainer_metrics(matrix: list[list[int]], **extra) -> dict:
    n = sum(map(sum, matrix))
    acc = sum(matrix[i][i] for i in range(3)) / n
    per_class = {name: {"precision": 0.5, "recall": matrix[i][i] / sum(matrix[i]),
                        "support": sum(matrix[i])} for i, name in enumerate(CLASSES)}
    return {"val_accuracy": acc, "test_accuracy": acc, "per_class": per_class,
            "confusion_matrix": {"split": "test", "labels": CLASSES, "matrix": matrix},
            "epochs_run": 2, "stopped_by": "epochs", **extra}


CHANCE = [[2, 1, 1], [1, 1, 2], [2, 1, 1]]  # 4 of 12 right: 0.33 on 3 classes
OK = [[4, 0, 0], [0, 4, 0], [0, 1, 3]]  # 11 of 12


def run_with(tmp_path, dataset_zip, metrics: dict):
    repo, blobs, notifier = InMemoryMetadataRepo(), InMemoryBlobStore(), InMemoryNotifier()
    blobs.put(DATASET_URL, dataset_zip.read_bytes())
    acc = metrics["test_accuracy"]
    service = TrainingService(repo=repo, blobs=blobs, notifier=notifier,
                              trainer=FakeTrainer(accuracy=acc, metrics=metrics),
                              model_store_url="mem://models", work_root=tmp_path / "home")
    project = service.create_project("cats", DATASET_URL, {"epochs": 2, "pretrained": False})
    job = service.run(service.start(project.id).id)
    return service, repo, notifier, project, job


def test_a_chance_level_model_is_recorded_and_every_view_says_so(tmp_path, dataset_zip):
    service, repo, notifier, project, job = run_with(tmp_path, dataset_zip,
                                                     trainer_metrics(CHANCE))
    # still a success: saved, recorded, pending evaluation
    assert job.state is JobState.SUCCEEDED
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    [model] = repo.list_models(project.id)
    verdict = model.metadata["metrics"]["verdict"]
    assert verdict["level"] == "chance"
    assert verdict["text"].startswith("0.33 is chance level for 3 classes: the model has not "
                                      "learned")
    assert model.metadata["metrics"]["test_accuracy"] == pytest.approx(1 / 3)
    assert model.metadata["metrics"]["best_epoch"] == 2  # the existing keys stay
    assert model.metadata["metrics"]["stop_reason"] == "epochs"

    final = repo.recent_logs(project.id, 1)[0]
    assert final.level == "warning"
    assert final.message == f"training complete; status pending_evaluation — ⚠️ {verdict['text']}"
    assert final.details["verdict"] == verdict

    [note] = notifier.sent
    assert note.ok and note.mark == "⚠️" and note.details["verdict"] == verdict
    assert note.message.startswith("Training finished, but the model for cats is not clearly "
                                   "better than chance. 0.33 is chance level for 3 classes")
    assert "saved and recorded anyway" in note.message

    view = service.status(project.id)
    assert view.job.metrics.verdict.level == "chance"
    assert view.job.metrics.per_class["class_a"].f1 == pytest.approx(0.5)
    assert view.job.summary.startswith("Test accuracy 0.33 (validation 0.33) after 2 epochs; "
                                       "training ran every epoch asked for.")
    assert verdict["text"] in view.job.summary


def test_a_good_model_keeps_the_plain_success_words(tmp_path, dataset_zip):
    service, repo, notifier, project, job = run_with(tmp_path, dataset_zip, trainer_metrics(OK))
    final = repo.recent_logs(project.id, 1)[0]
    assert final.level == "info" and final.message == "training complete; status " \
                                                      "pending_evaluation"
    assert final.details["verdict"]["level"] == "ok"
    [note] = notifier.sent
    assert note.mark == "✅" and note.message == ("Training complete: cats reached accuracy "
                                                 "0.9167. Model uploaded; evaluation can now "
                                                 "begin.")
    view = service.status(project.id)
    assert view.job.metrics.test_accuracy == pytest.approx(11 / 12)
    assert view.job.metrics.verdict.level == "ok"
    assert "Weakest class: 'class_c', 0.75 of its images recognised" in view.job.summary


def test_a_trainer_verdict_is_kept_and_metrics_appear_only_once_finished(tmp_path, dataset_zip):
    given = {"level": "weak", "text": "0.92 is weak, says the trainer."}
    service, repo, notifier, project, job = run_with(
        tmp_path, dataset_zip, trainer_metrics(OK, verdict=given, stop_reason="max_minutes"))
    assert service.status(project.id).job.metrics.verdict.model_dump() == given
    assert service.status(project.id).job.metrics.stop_reason == "max_minutes"
    [note] = notifier.sent
    assert note.mark == "⚠️" and "a weak model. 0.92 is weak, says the trainer." in note.message
    assert repo.recent_logs(project.id, 1)[0].level == "warning"

    again = service.start(project.id, force=True)
    view = service.status(project.id)
    assert view.job.id == again.id and view.job.metrics is None and view.job.summary is None


def test_a_failed_job_has_no_metrics_and_a_summary_naming_the_cause(tmp_path, dataset_zip):
    service, repo, notifier, project, job = run_with(tmp_path, dataset_zip,
                                                     trainer_metrics(OK))
    service.trainer = ExplodingTrainer()
    failed = service.run(service.start(project.id, force=True).id)
    assert failed.state is JobState.FAILED
    view = service.status(project.id)
    assert view.job.metrics is None
    assert view.job.summary == "Training failed: TrainingError: loss became NaN at epoch 1."
