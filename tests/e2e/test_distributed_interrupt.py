"""Ctrl-C on `train --nproc-per-node N` (SIGINT to the terminal's process group: the CLI,
torchrun's agent and every rank) ends the job failed, as the one-process `train` does, so the
project can be trained again at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.e2e.agent_process import db_rows
from training_agent.testing.datasets import make_dataset_zip

pytestmark = pytest.mark.slow


def test_ctrl_c_on_a_distributed_train_fails_its_job(tmp_path):
    home = tmp_path / "home"
    archive = make_dataset_zip(tmp_path / "shapes.zip", classes=2, size=32,
                               per_class={"train": 16, "val": 4})
    env = {**os.environ, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "WARNING"}
    config = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 4,
              "epochs": 200}
    made = subprocess.run([sys.executable, "-m", "training_agent", "project", "create",
                           "--name", "ddp-stop", "--dataset", str(archive), "--config",
                           json.dumps(config)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    project_id = made.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen([sys.executable, "-m", "training_agent", "train", project_id,
                             "--quiet", "--nproc-per-node", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group, as a terminal's job
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if db_rows(home, "SELECT 1 FROM agent_logs WHERE project_id = ? AND message "
                                 "LIKE 'epoch 1/%'", project_id):
                    break
            except sqlite3.OperationalError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training never reached epoch 1"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr  # as the one-process train after Ctrl-C
    assert "interrupted by SIGINT" in stderr.strip().splitlines()[-1]
    [job] = db_rows(home, "SELECT state, error FROM training_jobs WHERE project_id = ?",
                    project_id)
    assert job["state"] == "failed", (dict(job), stderr[-2000:])
    assert job["error"] == "interrupted by SIGINT"
    [project] = db_rows(home, "SELECT status FROM projects WHERE id = ?", project_id)
    assert project["status"] == "training_failed"
    assert db_rows(home, "SELECT 1 FROM agent_logs WHERE project_id = ? AND level = 'error' "
                         "AND message LIKE '%interrupted by SIGINT%'", project_id)
