"""The whole flow through the real CLI on the embedded default, checked as a user would."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.agent_process import db_rows
from training_agent.testing.datasets import make_dataset_zip

pytestmark = pytest.mark.slow


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-m", "training_agent", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"training-agent {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def db_row(home: Path, sql: str, *args: object) -> sqlite3.Row:
    return db_rows(home, sql, *args)[0]


def recompute_test_accuracy(manifest: dict, weights: Path, data: Path) -> float:
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    model = torchvision.models.get_model(manifest["backbone"], weights=None,
                                         num_classes=manifest["num_classes"])
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    inp = manifest["input"]
    size = inp["image_size"]
    mean = torch.tensor(inp["mean"]).view(3, 1, 1)
    std = torch.tensor(inp["std"]).view(3, 1, 1)
    correct = total = 0
    for label, name in enumerate(manifest["class_names"]):
        for path in sorted((data / "test" / name).iterdir()):
            img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
            with torch.no_grad():
                pred = model(((x - mean) / std).unsqueeze(0)).argmax(1).item()
            correct += int(pred == label)
            total += 1
    return correct / total


def test_project_create_then_train_then_verify_the_model(tmp_path):
    import zipfile

    home = tmp_path / "home"
    archive = make_dataset_zip(tmp_path / "shapes.zip", classes=3, size=32,
                               per_class={"train": 24, "val": 6, "test": 8})
    config = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 16}
    out = cli(home, "project", "create", "--name", "shapes", "--dataset", str(archive),
              "--config", json.dumps(config)).stdout
    project_id = out.strip().splitlines()[-1]
    assert db_row(home, "SELECT status FROM projects WHERE id = ?", project_id)[0] == \
        "pending_training"

    trained = cli(home, "train", project_id, "--epochs", "2")
    assert "model: file://" in trained.stdout
    # the summary for people: accuracy, worst classes, epochs and why it stopped, the verdict
    lines = trained.stdout.strip().splitlines()
    lines = lines[[i for i, line in enumerate(lines) if line.startswith("test accuracy")][-1]:]
    assert lines[0].startswith("test accuracy: 0.") and "(validation 0." in lines[0]
    assert lines[1].startswith("worst classes by per-class accuracy (recall): class_")
    assert lines[2] == "epochs run: 2 (ran every epoch asked for)"
    assert lines[3].split(":")[0] == "verdict"
    assert lines[4].startswith("summary: Test accuracy") and "Next step: " in lines[4]
    assert lines[5].startswith("report: file://") and lines[5].endswith("/report.html")
    assert lines[-1].startswith("model: file://")

    project = db_row(home, "SELECT * FROM projects WHERE id = ?", project_id)
    assert project["status"] == "pending_evaluation"
    model = db_row(home, "SELECT * FROM models WHERE project_id = ?", project_id)
    assert model["name"] == "shapes_model" and model["framework"] == "pytorch"
    weights = Path(urlsplit(model["gcs_url"]).path)
    assert weights.name == "model.pth" and weights.is_file()
    folder = weights.parent
    assert {p.name for p in folder.iterdir()} >= {
        "model.pth", "model.safetensors", "manifest.json", "training_curves.png",
        "confusion_matrix.png"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backbone"] == "resnet18" and manifest["class_names"] == [
        "class_a", "class_b", "class_c"]

    data = tmp_path / "data"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(data)
    accuracy = recompute_test_accuracy(manifest, weights, data / "dataset")
    assert accuracy == pytest.approx(model["accuracy"], abs=1e-9)
    assert manifest["metrics"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)

    logs = [r[0] for r in sqlite3.connect(home / "training-agent.sqlite3").execute(
        "SELECT message FROM agent_logs WHERE project_id = ? ORDER BY id", (project_id,))]
    assert "epoch 1/2" in logs and "epoch 2/2" in logs
    status = json.loads(cli(home, "status", project_id, "--json").stdout)
    assert status["project_status"] == "pending_evaluation"
    assert status["job"]["state"] == "succeeded" and status["job"]["model_url"] == model["gcs_url"]
    metrics = status["job"]["metrics"]
    assert metrics["test_accuracy"] == pytest.approx(model["accuracy"], abs=1e-9)
    assert metrics["val_accuracy"] == pytest.approx(manifest["metrics"]["val_accuracy"])
    assert set(metrics["per_class"]) == {"class_a", "class_b", "class_c"}
    assert set(metrics["per_class"]["class_a"]) >= {"precision", "recall", "f1"}
    assert metrics["epochs_run"] == 2 and metrics["stop_reason"] == "epochs"
    assert metrics["verdict"]["level"] in ("ok", "weak", "chance")
    assert metrics["verdict"]["text"] in status["job"]["summary"]
    assert json.loads(model["metadata"])["metrics"]["verdict"] == metrics["verdict"]
    text = cli(home, "status", project_id).stdout
    assert f"test accuracy: {model['accuracy']:.4f}" in text
    assert f"verdict: {'✅' if metrics['verdict']['level'] == 'ok' else '⚠️'} " \
           f"{metrics['verdict']['level']}: {metrics['verdict']['text']}" in text


def test_train_of_a_bad_archive_exits_non_zero_and_says_why(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    proc = cli(home, "project", "create", "--name", "x", "--dataset", str(bad), check=False)
    assert proc.returncode == 1 and "not a zip archive" in proc.stderr
    url = bad.resolve().as_uri()  # a file:// URL is read in place at create: refused too
    proc = cli(home, "project", "create", "--name", "x", "--dataset", url, check=False)
    assert proc.returncode == 1 and "not a zip archive" in proc.stderr
    # a zip that was good at create and broken by the time it trains fails the job
    good = make_dataset_zip(tmp_path / "later.zip", per_class={"train": 2})
    project_id = cli(home, "project", "create", "--name", "x", "--dataset",
                     good.resolve().as_uri()).stdout.strip().splitlines()[-1]
    good.write_bytes(b"not a zip")
    proc = cli(home, "train", project_id, "--config", '{"pretrained": false}', check=False)
    assert proc.returncode == 1 and "not a readable zip archive" in proc.stderr
    assert db_row(home, "SELECT status FROM projects WHERE id = ?", project_id)[0] == \
        "training_failed"
    assert not any((home / "work" / "jobs").glob("*")), "work folder left behind"


def test_unknown_project_and_bad_config_are_clear_errors(tmp_path):
    home = tmp_path / "home"
    proc = cli(home, "train", "00000000-0000-4000-8000-000000000000", check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr
    archive = make_dataset_zip(tmp_path / "d.zip", per_class={"train": 2})
    pid = cli(home, "project", "create", "--name", "x", "--dataset", str(archive)
              ).stdout.strip().splitlines()[-1]
    proc = cli(home, "train", pid, "--config", '{"epochs": -1, "colour": 1}', check=False)
    assert proc.returncode == 1
    assert "epochs" in proc.stderr and "colour: unknown key" in proc.stderr


def test_db_migrate_creates_the_five_tables_once(tmp_path):
    home = tmp_path / "home"
    first = cli(home, "db", "migrate").stdout
    assert "schema is up to date" in first  # SQLite migrates itself on first use
    conn = sqlite3.connect(home / "training-agent.sqlite3")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"projects", "datasets", "models", "agent_logs", "training_jobs"} <= tables
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1


def test_demo_runs_offline_and_prints_accuracy_and_model(tmp_path):
    out = cli(tmp_path / "home", "demo", "--epochs", "1").stdout
    assert "test accuracy: " in out and "model: file://" in out
    assert "epochs run: 1 (ran every epoch asked for)" in out and "\nverdict: " in out
    assert "project status: pending_evaluation" in out


def wait_for_log(home: Path, project_id: str, message: str, proc: subprocess.Popen[str],
                 timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if db_rows(home, "SELECT 1 FROM agent_logs WHERE project_id = ? AND message = ?",
                       project_id, message):
                return
        except sqlite3.OperationalError:  # the agent is creating the database
            pass
        assert proc.poll() is None, f"train ended before {message!r}:\n{proc.communicate()}"
        assert time.monotonic() < deadline, f"no {message!r} in agent_logs"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_train_fails_its_job_and_the_next_train_resumes(tmp_path, sig, code):
    home = tmp_path / "home"
    archive = make_dataset_zip(tmp_path / "shapes.zip", classes=3, size=32,
                               per_class={"train": 24, "val": 6})
    config = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 8,
              "epochs": 4}
    project_id = cli(home, "project", "create", "--name", "stop-me", "--dataset", str(archive),
                     "--config", json.dumps(config)).stdout.strip().splitlines()[-1]
    env = {**os.environ, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "WARNING"}
    # SIGINT as a terminal delivers it, whatever this process inherited: a shell that starts
    # the suite in the background (`scripts/test &`) ignores SIGINT there, and an ignored
    # signal stays ignored in every child, so `train` would rightly never see it
    proc = subprocess.Popen([sys.executable, "-m", "training_agent", "train", project_id,
                             "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_log(home, project_id, "epoch 1/4", proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    name = sig.name
    assert proc.returncode == code, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert f"interrupted by {name}" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr

    job = db_row(home, "SELECT * FROM training_jobs WHERE project_id = ?", project_id)
    assert job["state"] == "failed" and job["error"] == f"interrupted by {name}"
    assert job["finished_at"] is not None
    err = db_row(home, "SELECT * FROM agent_logs WHERE project_id = ? AND level = 'error'",
                 project_id)
    assert f"interrupted by {name}" in err["message"]
    assert db_row(home, "SELECT status FROM projects WHERE id = ?", project_id)[0] == \
        "training_failed"
    assert not any((home / "work" / "jobs").glob("*")), "work folder left behind"
    if sig is signal.SIGTERM:
        return  # the same state as after SIGINT: training again is shown once

    again = cli(home, "train", project_id, "--quiet")
    assert "model: file://" in again.stdout
    assert db_row(home, "SELECT status FROM projects WHERE id = ?", project_id)[0] == \
        "pending_evaluation"
    assert db_row(home, "SELECT 1 FROM agent_logs WHERE project_id = ? AND message LIKE "
                  "'resuming from checkpoint of epoch %/4'", project_id)


def test_train_fails_a_stale_job_that_a_killed_train_left_active(tmp_path):
    """SIGKILL leaves no chance to clean up: the next `train` fails the job once its heartbeat
    is older than the limit `serve` and `watch` use, instead of answering 409 forever."""
    home = tmp_path / "home"
    archive = make_dataset_zip(tmp_path / "d.zip", per_class={"train": 4, "val": 2})
    project_id = cli(home, "project", "create", "--name", "killed", "--dataset", str(archive),
                     "--config", '{"pretrained": false, "epochs": 1, "image_size": 32}'
                     ).stdout.strip().splitlines()[-1]
    # what a SIGKILLed `train` leaves: an active job, the project `training`, an old heartbeat
    conn = sqlite3.connect(home / "training-agent.sqlite3")
    with conn:
        conn.execute(
            "INSERT INTO training_jobs (id, project_id, state, config, progress, worker_id, "
            "heartbeat_at, created_at, updated_at) VALUES (?, ?, 'training', '{}', '{}', "
            "'cli@host/pid:1', '2020-01-01T00:00:00.000000+00:00', '2020-01-01T00:00:00.000000+00:00', "
            "'2020-01-01T00:00:00.000000+00:00')", (str(uuid.uuid4()), project_id))
        conn.execute("UPDATE projects SET status = 'training' WHERE id = ?", (project_id,))
    conn.close()
    trained = cli(home, "train", project_id, "--quiet")  # was a 409: a job is active
    assert "heartbeat stale" in trained.stderr and "model: file://" in trained.stdout
    stale = db_row(home, "SELECT * FROM training_jobs WHERE project_id = ? AND "
                   "worker_id = 'cli@host/pid:1'", project_id)
    assert stale["state"] == "failed" and "heartbeat stale" in stale["error"]
