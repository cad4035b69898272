"""The runner through a metadata store outage: a worker that dies meanwhile still has its real
cause recorded once the store is back (kept and retried, not dropped), and the runner's own
live jobs are never swept as stale."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import timedelta

from training_agent.domain.errors import MetadataError

START = "/agents/training/start"


def test_a_worker_killed_during_an_outage_is_recorded_with_its_cause_once_the_store_is_back(
        make_agent, monkeypatch, caplog):
    agent = make_agent(epoch_seconds=0.5)
    pid = agent.project(config={"epochs": 40})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    worker = agent.runner.worker_pid(job_id)
    repo = agent.container.metadata_repo()  # the runner's store (the worker has its own)
    down = MetadataError("postgres db:5432/agent is unreachable: couldn't get a connection")

    def unreachable(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise down

    with caplog.at_level(logging.WARNING, logger="training_agent.runner"):
        with monkeypatch.context() as outage:
            for name in ("get_job", "save_job", "touch_job", "active_jobs"):
                outage.setattr(repo, name, unreachable)
            os.kill(worker, signal.SIGKILL)
            deadline = time.monotonic() + 3
            while agent.runner.running_jobs():
                assert time.monotonic() < deadline, "the dead worker was not reaped"
                time.sleep(0.05)
            time.sleep(1.5)  # several ticks of the dispatcher while the store is away
            assert agent.runner.check()  # the dispatcher is still running
        back = time.monotonic()
        view = agent.wait_status(pid, "training_failed", timeout=10)
    assert time.monotonic() - back < 5
    assert view["job"]["id"] == job_id
    assert view["job"]["error"] == "worker process was killed by signal SIGKILL " \
                                   "(killed: out of memory, or by an operator)"
    complaints = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert complaints and all(r.exc_info is None for r in complaints)  # lines, not tracebacks
    assert len(complaints) <= 3  # not one per tick


def test_the_runner_never_sweeps_its_own_live_worker_as_stale(make_agent):
    # a heartbeat gone stale while the store was away (or the worker's beat thread was slow)
    agent = make_agent(epoch_seconds=0.5, stale_after=2.0)
    pid = agent.project(config={"epochs": 40})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    repo = agent.container.metadata_repo()
    job = repo.get_job(job_id)
    job.heartbeat_at = job.heartbeat_at - timedelta(minutes=10)  # type: ignore[operator]
    assert repo.save_job(job)
    agent.runner._dispatcher.sweep_stale()
    assert repo.get_job(job_id).active
    assert agent.status(pid)["project_status"] == "training"
    agent.client.post(f"/agents/training/cancel/{pid}")
