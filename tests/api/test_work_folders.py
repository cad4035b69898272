"""A worker killed by SIGKILL (out of memory, an operator) leaves no work folder: the runner
removes `work/jobs/<id>/` once it reaps the worker (issue 9, item 7)."""

from __future__ import annotations

import os
import signal
import time

START = "/agents/training/start"


def test_a_killed_workers_work_folder_is_removed(make_agent):
    agent = make_agent(epoch_seconds=0.5)
    pid = agent.project(config={"epochs": 40})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    work = agent.service.work_root / "jobs" / job_id
    assert (work / "dataset.zip").is_file(), "the dataset is where the test looks"
    worker = agent.runner.worker_pid(job_id)
    assert worker is not None

    os.kill(worker, signal.SIGKILL)

    agent.wait_status(pid, "training_failed", timeout=10)
    deadline = time.monotonic() + 5
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not work.exists(), f"{work} left behind by the killed worker"
