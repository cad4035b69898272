"""`training-agent serve` as a real process on loopback: train, race, kill, cancel, auth."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from training_agent.testing.datasets import make_dataset_zip

from .agent_process import (
    CLI,
    agent_env,
    alive,
    create_project,
    db_rows,
    needs_trainer,
    serving,
    wait_until,
    worker_pid,
)

pytestmark = pytest.mark.slow
START = "/agents/training/start"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def small_zip(tmp_path: Path) -> Path:
    return make_dataset_zip(tmp_path / "shapes.zip", classes=2, size=32,
                            per_class={"train": 6, "val": 2, "test": 2})


@needs_trainer
def test_serve_trains_a_project_created_with_the_cli(home, small_zip):
    project_id = create_project(home, small_zip, name="e2e-serve")
    with serving(home) as api:
        r = api.post(START, json={"project_id": project_id})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        view = wait_until(api, project_id, lambda v: v["project_status"] in (
            "pending_evaluation", "training_failed"))
    assert view["project_status"] == "pending_evaluation", view
    assert view["job"]["state"] == "succeeded" and view["job"]["id"] == job_id
    [model] = db_rows(home, "SELECT * FROM models WHERE project_id = ?", project_id)
    assert model["name"] == "e2e-serve_model" and model["framework"] == "pytorch"
    assert model["gcs_url"].endswith(f"/models/{project_id}/{job_id}/model.pth")
    assert Path(urlsplit(model["gcs_url"]).path).is_file()
    assert 0.0 <= model["accuracy"] <= 1.0
    [job] = db_rows(home, "SELECT state FROM training_jobs WHERE project_id = ?", project_id)
    assert job["state"] == "succeeded"


@needs_trainer
def test_twenty_concurrent_starts_give_one_202_and_one_job(home, small_zip):
    key = {"X-API-Key": "e2e-key"}
    project_id = create_project(home, small_zip, name="race")
    with serving(home, MCP_API_KEY="e2e-key") as api:
        assert api.post(START, json={"project_id": project_id}).status_code == 401
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(
                lambda _: api.post(START, json={"project_id": project_id}, headers=key),
                range(20)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [202] + [409] * 19, [r.text for r in answers if r.status_code != 409]
        assert api.get(f"/agents/training/status/{project_id}", headers=key).status_code == 200
        assert api.get("/health").status_code == 200
    jobs = db_rows(home, "SELECT id FROM training_jobs WHERE project_id = ?", project_id)
    assert len(jobs) == 1


def _started_worker(home: Path, api, project_id: str, epochs: int) -> tuple[str, int]:
    job_id = api.post(START, json={"project_id": project_id,
                                   "config": {"epochs": epochs, "early_stopping_patience": None}}).json()["job_id"]
    wait_until(api, project_id, lambda v: (v["job"] or {}).get("progress", {}).get("epoch"))
    pid = worker_pid(home, job_id)
    assert pid is not None and alive(pid)
    return job_id, pid


@needs_trainer
def test_a_killed_worker_fails_its_job_then_a_new_start_succeeds(home, small_zip):
    project_id = create_project(home, small_zip, name="killed")
    with serving(home) as api:
        job_id, pid = _started_worker(home, api, project_id, epochs=500)
        os.kill(pid, signal.SIGKILL)
        view = wait_until(api, project_id, lambda v: v["project_status"] == "training_failed",
                          timeout=30)
        assert view["job"]["state"] == "failed"
        assert "killed by signal SIGKILL" in view["job"]["error"]
        [log] = db_rows(home, "SELECT * FROM agent_logs WHERE project_id = ? AND level = 'error'",
                        project_id)
        assert "worker process was killed by signal SIGKILL" in log["message"]

        r = api.post(START, json={"project_id": project_id, "config": {"epochs": 1}})
        assert r.status_code == 202
        view = wait_until(api, project_id, lambda v: v["project_status"] in (
            "pending_evaluation", "training_failed"))
        assert view["project_status"] == "pending_evaluation", view
        assert view["job"]["id"] == r.json()["job_id"] != job_id


@needs_trainer
def test_cancel_stops_the_worker_within_seconds(home, small_zip):
    project_id = create_project(home, small_zip, name="cancelled")
    with serving(home) as api:
        job_id, pid = _started_worker(home, api, project_id, epochs=500)
        t0 = time.monotonic()
        assert api.post(f"/agents/training/cancel/{project_id}").status_code == 202
        while alive(pid):
            assert time.monotonic() - t0 < 10, "the worker outlived the cancel"
            time.sleep(0.1)
        view = api.get(f"/agents/training/status/{project_id}").json()
    assert view["project_status"] == "training_cancelled"
    assert view["job"]["state"] == "cancelled" and view["job"]["id"] == job_id
    assert not db_rows(home, "SELECT id FROM models WHERE project_id = ?", project_id)


@needs_trainer
def test_watch_trains_pending_projects_and_stops_on_sigterm(home, small_zip, tmp_path):
    project_id = create_project(home, small_zip, name="watched")
    log = open(tmp_path / "watch.log", "w")
    proc = subprocess.Popen([*CLI, "watch", "--interval", "0.5", "--grace", "5"],
                            env=agent_env(home), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            [row] = db_rows(home, "SELECT status FROM projects WHERE id = ?", project_id)
            if row["status"] in ("pending_evaluation", "training_failed"):
                break
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "watch.log").read_text()
            time.sleep(0.3)
        assert row["status"] == "pending_evaluation", (tmp_path / "watch.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert len(db_rows(home, "SELECT id FROM models WHERE project_id = ?", project_id)) == 1
