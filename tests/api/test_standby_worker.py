"""The standby worker: `serve`, `watch` and `mcp` keep one worker process spawned ahead of the
next job (its container built, the trainer's libraries loading), so a job does not wait for a
process to start and import torch; one is never spawned beside a job that fills the last slot."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from training_agent.entrypoints.settings import Settings
from training_agent.entrypoints.worker import standby as standby_module
from training_agent.entrypoints.worker.runner import build_runner
from training_agent.testing.processes import alive

START = "/agents/training/start"
T = TypeVar("T")


def wait_until(value: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (v := value()) is not None:
            return v
        time.sleep(0.05)
    raise AssertionError(f"nothing came within {timeout} s")


def test_a_job_runs_in_the_worker_spawned_before_it_then_another_waits(make_agent):
    agent = make_agent(standby=True, epoch_seconds=0.4)
    standby = wait_until(agent.runner.standby_pid)
    assert alive(standby)

    pid = agent.project(config={"epochs": 3})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    assert agent.runner.worker_pid(job_id) == standby
    assert agent.runner.standby_pid() is None  # none beside the job in the only slot
    # it loaded from a thread at the lowest priority; the job's (main) thread runs at normal
    assert os.getpriority(os.PRIO_PROCESS, standby) == os.getpriority(os.PRIO_PROCESS, 0)

    view = agent.wait_status(pid, "pending_evaluation")
    assert view["job"]["state"] == "succeeded"
    following = wait_until(agent.runner.standby_pid)
    assert following != standby


def test_with_a_free_slot_the_next_standby_is_spawned_at_once(make_agent):
    agent = make_agent(standby=True, epoch_seconds=0.4, max_concurrent=2)
    first = wait_until(agent.runner.standby_pid)
    pid = agent.project(config={"epochs": 3})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    second = wait_until(lambda: p if (p := agent.runner.standby_pid()) != first else None)
    assert agent.runner.worker_pid(job_id) == first and alive(second)
    agent.wait_status(pid, "pending_evaluation")


def test_a_queued_job_gets_a_standby_loaded_while_the_slot_is_taken(make_agent):
    agent = make_agent(standby=True, epoch_seconds=0.4)
    wait_until(agent.runner.standby_pid)
    first, second = (agent.project(name=f"p{i}", config={"epochs": 3}) for i in range(2))
    job = agent.client.post(START, json={"project_id": first}).json()["job_id"]
    agent.wait_for(first, lambda v: v["job"]["progress"].get("epoch"))
    assert agent.runner.standby_pid() is None
    queued = agent.client.post(START, json={"project_id": second}).json()["job_id"]
    standby = wait_until(agent.runner.standby_pid)  # spawned for the queued job
    assert agent.runner.worker_pid(job) != standby and queued in agent.runner.queued_jobs()
    agent.wait_for(second, lambda v: v["job"]["progress"].get("epoch"))
    assert agent.runner.worker_pid(queued) == standby


def test_a_standby_that_dies_is_replaced_and_jobs_still_run(make_agent, monkeypatch):
    monkeypatch.setattr(standby_module, "RETRY_SECONDS", 0.5)
    agent = make_agent(standby=True)
    first = wait_until(agent.runner.standby_pid)
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: p if (p := agent.runner.standby_pid()) not in (None, first)
                        else None)
    assert alive(second)
    pid = agent.project(config={"epochs": 1})
    agent.client.post(START, json={"project_id": pid})
    assert agent.wait_status(pid, "pending_evaluation")["job"]["state"] == "succeeded"


def broken_container():  # module-level: a spawned standby imports it from here
    raise RuntimeError("the store's settings are broken")


def test_a_standby_that_cannot_start_is_not_respawned_in_a_loop(make_agent, caplog):
    from training_agent.entrypoints.worker.runner import JobRunner

    agent = make_agent()
    runner = JobRunner(agent.service, broken_container, owner="serve@broken", standby=True,
                       heartbeat_seconds=0.5, poll_seconds=0.05)
    runner.start()
    try:
        first = wait_until(runner.standby_pid)
        wait_until(lambda: True if runner.standby_pid() is None else None)  # it died
        time.sleep(1.0)  # 20 of the dispatcher's ticks
        assert runner.standby_pid() is None
        assert any(f"standby worker process {first} exited with code 1; the next in 60 s"
                   in r.getMessage() for r in caplog.records)
    finally:
        runner.stop()


def test_while_no_standby_is_ready_a_job_runs_in_a_new_process(make_agent):
    agent = make_agent(standby=True, epoch_seconds=0.4)
    standby = wait_until(agent.runner.standby_pid)
    os.kill(standby, signal.SIGKILL)
    wait_until(lambda: True if not alive(standby) else None)
    pid = agent.project(config={"epochs": 2})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    worker = agent.runner.worker_pid(job_id)
    assert worker is not None and worker != standby
    assert agent.wait_status(pid, "pending_evaluation")["job"]["state"] == "succeeded"


def test_stopping_the_agent_ends_its_standby_worker(make_agent):
    agent = make_agent(standby=True)
    standby = wait_until(agent.runner.standby_pid)
    agent.runner.stop()
    assert not alive(standby)
    assert agent.runner.standby_pid() is None


def test_without_standby_no_process_waits(make_agent):
    agent = make_agent()
    time.sleep(0.5)  # several of the dispatcher's ticks (every 0.05 s)
    assert agent.runner.standby_pid() is None


def test_the_standby_worker_is_on_by_default_and_the_setting_turns_it_off(make_agent,
                                                                         monkeypatch):
    agent = make_agent()
    monkeypatch.delenv("TRAINING_AGENT_STANDBY_WORKER", raising=False)
    assert Settings().standby_worker is True
    monkeypatch.setenv("TRAINING_AGENT_STANDBY_WORKER", "0")
    assert Settings().standby_worker is False
    for on in (True, False):  # what `serve`, `watch` and `mcp` build from the settings
        settings = agent.settings.model_copy(update={"standby_worker": on})
        runner = build_runner(agent.container, settings, f"serve@standby-{on}")
        runner.start()
        try:
            if on:
                assert alive(wait_until(runner.standby_pid))
            else:
                time.sleep(0.5)
                assert runner.standby_pid() is None
        finally:
            runner.stop()
