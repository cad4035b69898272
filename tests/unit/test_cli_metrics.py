"""`train` ends with the metrics for people; `status` (text and --json) carries them.

In-process with click's runner and the FakeTrainer reporting given metrics (the real trainer's
output is checked in tests/e2e/test_cli_flow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fakes import fake_container
from training_agent.entrypoints import cli
from training_agent.testing.datasets import make_dataset_zip

CLASSES = ["cat", "dog", "fox", "owl"]
MATRIX = [[9, 1, 0, 0], [0, 10, 0, 0], [3, 1, 6, 0], [0, 0, 2, 8]]  # 33 of 40
METRICS = {
    "val_accuracy": 0.8123456, "test_accuracy": 0.825, "best_epoch": 2, "epochs_run": 3,
    "stop_reason": "early_stopping",
    "per_class": {name: {"precision": 0.8, "recall": MATRIX[i][i] / 10, "support": 10}
                  for i, name in enumerate(CLASSES)},
    "confusion_matrix": {"split": "test", "labels": CLASSES, "matrix": MATRIX},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return tmp_path / "home"


def use_fake_trainer(monkeypatch: pytest.MonkeyPatch, **options) -> None:
    monkeypatch.setattr(cli, "build_container",
                        lambda settings: fake_container(settings, **options))


def run(*args: str) -> str:
    result = CliRunner().invoke(cli.main, list(args))
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def make_project(tmp_path: Path) -> str:
    archive = make_dataset_zip(tmp_path / "animals.zip", classes=4, class_names=CLASSES,
                               per_class={"train": 4, "val": 2, "test": 10})
    out = run("project", "create", "--name", "animals", "--dataset", str(archive),
              "--config", '{"epochs": 3, "pretrained": false}')
    return out.strip().splitlines()[-1]


def test_train_ends_with_accuracy_worst_classes_epochs_verdict_and_model(home, tmp_path,
                                                                          monkeypatch):
    use_fake_trainer(monkeypatch, accuracy=0.825, metrics=METRICS)
    pid = make_project(tmp_path)
    lines = run("train", pid, "--quiet").strip().splitlines()
    assert lines[0] == "test accuracy: 0.8250 (validation 0.8123)"
    assert lines[1] == "worst classes by per-class accuracy (recall): fox 0.60, owl 0.80, " \
                       "cat 0.90"
    assert lines[2] == "epochs run: 3 (stopped early: validation accuracy stopped improving)"
    assert lines[3] == ("verdict: ✅ ok: 0.82 test accuracy on 40 images is well above chance "
                        "(0.25 for 4 classes).")
    assert lines[4].startswith("model: file://") and lines[4].endswith("/model.pth")


def test_status_text_and_json_carry_the_finished_jobs_metrics(home, tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, accuracy=0.825, metrics=METRICS)
    pid = make_project(tmp_path)
    run("train", pid, "--quiet")

    text = run("status", pid)
    assert f"project {pid}: pending_evaluation" in text
    assert "test accuracy: 0.8250 (validation 0.8123)" in text
    assert "worst classes by per-class accuracy (recall): fox 0.60" in text
    assert "verdict: ✅ ok: 0.82 test accuracy" in text
    assert "0.8123456" not in text  # rounded for people

    view = json.loads(run("status", pid, "--json"))
    metrics = view["job"]["metrics"]
    assert set(metrics) == {"test_accuracy", "val_accuracy", "per_class", "epochs_run",
                            "stop_reason", "verdict"}
    assert metrics["test_accuracy"] == 0.825 and metrics["val_accuracy"] == 0.8123456
    assert metrics["per_class"]["fox"] == {"precision": 0.8, "recall": 0.6,
                                           "f1": pytest.approx(0.6857, abs=1e-4),
                                           "support": 10}
    assert metrics["epochs_run"] == 3 and metrics["stop_reason"] == "early_stopping"
    assert metrics["verdict"]["level"] == "ok"
    assert view["job"]["summary"].startswith("Test accuracy 0.82 (validation 0.81) after 3 "
                                             "epochs")


def test_a_chance_level_model_says_so_in_train_and_status(home, tmp_path, monkeypatch):
    matrix = [[3, 3, 2, 2], [2, 3, 3, 2], [3, 2, 2, 3], [2, 3, 3, 2]]  # 10 of 40
    chance = {**METRICS, "test_accuracy": 0.25,
              "confusion_matrix": {"split": "test", "labels": CLASSES, "matrix": matrix}}
    use_fake_trainer(monkeypatch, accuracy=0.25, metrics=chance)
    pid = make_project(tmp_path)
    out = run("train", pid, "--quiet")
    line = ("verdict: ⚠️ chance: 0.25 is chance level for 4 classes: the model has not "
            "learned; try more epochs, a larger image size, or pretrained weights.")
    assert line in out.splitlines()
    assert line in run("status", pid).splitlines()
    assert "⚠️ 0.25 is chance level" in run("status", pid)  # the final log row


def test_status_text_rounds_progress_while_a_job_runs():
    from training_agent.domain.views import ProgressView

    line = cli.progress_line(ProgressView(epoch=2, epochs=10, train_loss=2.0912345,
                                          val_accuracy=0.76, images_per_second=1234.567,
                                          eta_seconds=35.2))
    assert line == ("progress: epoch=2/10, train_loss=2.09, val_accuracy=0.7600, "
                    "images_per_second=1235, eta_seconds=35")
    assert cli.progress_line(ProgressView()) is None


def test_worst_classes_leave_out_perfect_ones():
    from datetime import datetime, timezone

    from training_agent.domain.verdict import job_metrics
    from training_agent.domain.views import JobMetricsView, JobView, ProgressView

    def lines_for(matrix: list[list[int]]) -> list[str]:
        metrics = {**METRICS, "test_accuracy": sum(matrix[i][i] for i in range(4)) / 40,
                   "per_class": {name: {"precision": 1.0, "recall": matrix[i][i] / 10,
                                        "support": 10} for i, name in enumerate(CLASSES)},
                   "confusion_matrix": {"split": "test", "labels": CLASSES, "matrix": matrix}}
        now = datetime.now(timezone.utc)
        job = JobView(id="j", state="succeeded", progress=ProgressView(), queued_at=now,
                      started_at=now,
                      metrics=JobMetricsView.model_validate(job_metrics(metrics)))
        return cli.metrics_lines(job)

    perfect = [[10 if i == j else 0 for j in range(4)] for i in range(4)]
    assert lines_for(perfect)[1] == "worst classes by per-class accuracy (recall): none, every " \
                                    "class 1.00"
    one_miss = [row[:] for row in perfect]
    one_miss[2][2], one_miss[2][0] = 9, 1
    assert lines_for(one_miss)[1] == "worst classes by per-class accuracy (recall): fox 0.90"
