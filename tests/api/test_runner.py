"""The job runner: worker processes, the concurrency bound, dead workers, stale jobs, watch."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from datetime import timedelta

from tests.fakes import fake_container
from training_agent.domain.errors import TrainingError
from training_agent.domain.models import JobState, TrainingJob, utcnow
from training_agent.entrypoints.worker.runner import JobRunner, exit_cause
from training_agent.entrypoints.worker.watch import watch

START = "/agents/training/start"


def test_a_killed_worker_fails_its_job_with_the_cause_then_a_new_start_succeeds(make_agent):
    agent = make_agent(epoch_seconds=0.5)
    pid = agent.project(config={"epochs": 40})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["progress"].get("epoch"))
    worker = agent.runner.worker_pid(job_id)
    assert worker is not None and worker != os.getpid()

    os.kill(worker, signal.SIGKILL)

    view = agent.wait_status(pid, "training_failed", timeout=10)
    assert view["job"]["state"] == "failed"
    assert "worker process was killed by signal SIGKILL" in view["job"]["error"]
    error = next(e for e in view["recent_logs"] if e["level"] == "error")
    assert error["message"].startswith("training failed at step training: worker process "
                                       "was killed by signal SIGKILL")
    assert error["details"]["step"] == "training"
    assert not agent.container.metadata_repo().list_models(pid)

    r = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 1}})
    assert r.status_code == 202
    assert agent.wait_status(pid, "pending_evaluation")["job"]["id"] == r.json()["job_id"]


def test_a_worker_that_raises_ends_its_job_failed_by_the_service(make_agent):
    agent = make_agent(fail_with=TrainingError("loss became NaN at epoch 2"))
    pid = agent.project(config={"epochs": 3})
    agent.client.post(START, json={"project_id": pid})
    view = agent.wait_status(pid, "training_failed")
    assert view["job"]["error"] == "TrainingError: loss became NaN at epoch 2"


def test_at_most_max_concurrent_jobs_run_the_rest_wait_in_order(make_agent):
    agent = make_agent(epoch_seconds=0.3, max_concurrent=2)
    projects = [agent.project(name=f"p{i}", config={"epochs": 2}) for i in range(4)]
    jobs = [agent.client.post(START, json={"project_id": p}).json()["job_id"] for p in projects]
    peak, started_order = 0, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = agent.runner.running_jobs()
        peak = max(peak, len(running))
        started_order += [j for j in running if j not in started_order]
        states = [agent.service.job(j).state for j in jobs]
        if all(s is JobState.SUCCEEDED for s in states):
            break
        time.sleep(0.05)
    assert all(agent.service.job(j).state is JobState.SUCCEEDED for j in jobs)
    assert peak == 2
    assert started_order[2:] == jobs[2:]  # queued ones start first-in, first-out


def _runner(agent, **kw) -> JobRunner:
    return JobRunner(agent.service, functools.partial(fake_container, agent.settings),
                     owner=kw.pop("owner", "serve@test"), heartbeat_seconds=0.5,
                     poll_seconds=0.05, **kw)


def test_at_start_stale_jobs_fail_and_queued_jobs_are_adopted(make_agent, tmp_path):
    agent = make_agent()
    agent.runner.stop()
    repo = agent.container.metadata_repo()
    old = utcnow() - timedelta(minutes=30)
    # a job whose agent died mid-training, a queued job of our previous life, a fresh foreign one
    orphan = repo.claim_job(TrainingJob(project_id=agent.project("orphan"), worker_id="gone",
                                        state=JobState.TRAINING, heartbeat_at=old), None)
    ours = repo.claim_job(TrainingJob(project_id=agent.project("ours"), worker_id="serve@test",
                                      created_at=old, heartbeat_at=old), None)
    theirs = repo.claim_job(TrainingJob(project_id=agent.project("theirs"),
                                        worker_id="watch@elsewhere:7", heartbeat_at=utcnow()),
                            None)
    dead = repo.claim_job(TrainingJob(project_id=agent.project("dead"), worker_id="mcp@gone:9",
                                      created_at=old, heartbeat_at=old), None)
    runner = _runner(agent, stale_after=60)
    runner.start()
    try:
        failed = repo.get_job(orphan.id)
        assert failed.state is JobState.FAILED and "heartbeat stale" in failed.error
        assert any(e.level == "error" and "heartbeat stale" in e.message
                   for e in repo.recent_logs(orphan.project_id))
        deadline = time.monotonic() + 30
        while repo.get_job(ours.id).state is not JobState.SUCCEEDED:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert repo.get_job(theirs.id).state is JobState.QUEUED  # alive elsewhere: not ours
        gone = repo.get_job(dead.id)  # a dead agent's queued job is failed, never run twice
        assert gone.state is JobState.FAILED and "heartbeat stale" in gone.error
    finally:
        runner.stop()


def test_a_running_job_keeps_a_fresh_heartbeat(make_agent):
    agent = make_agent(epoch_seconds=3.0)
    pid = agent.project(config={"epochs": 3})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["state"] == "training")
    time.sleep(1.5)  # inside one slow epoch: only the heartbeat thread writes
    job = agent.service.job(job_id)
    assert utcnow() - job.heartbeat_at < timedelta(seconds=1.2)
    assert job.worker_id == f"serve@test/pid:{agent.runner.worker_pid(job_id)}"
    assert agent.service.fail_stale(timedelta(seconds=2)) == []


def test_stopping_the_agent_fails_running_jobs_and_keeps_queued_ones(make_agent):
    agent = make_agent(epoch_seconds=1.0)
    running = agent.project("running", config={"epochs": 30})
    waiting = agent.project("waiting", config={"epochs": 1})
    agent.client.post(START, json={"project_id": running})
    waiting_job = agent.client.post(START, json={"project_id": waiting}).json()["job_id"]
    agent.wait_for(running, lambda v: v["job"]["state"] == "training")

    agent.runner.stop()

    view = agent.status(running)
    assert view["job"]["state"] == "failed" and "agent stopped" in view["job"]["error"]
    assert agent.service.job(waiting_job).state is JobState.QUEUED
    restarted = _runner(agent)  # same owner: adopts its queued job at once
    restarted.start()
    try:
        agent.wait_status(waiting, "pending_evaluation", timeout=30)
    finally:
        restarted.stop()


def test_two_watchers_never_train_the_same_project(make_agent):
    agent = make_agent(epoch_seconds=0.1)
    agent.runner.stop()
    projects = [agent.project(f"w{i}", config={"epochs": 1}) for i in range(5)]
    stop = threading.Event()
    runners = [_runner(agent, owner=f"watch@test:{i}", max_concurrent=2) for i in range(2)]
    threads = [threading.Thread(target=watch, args=(r, stop, 0.05)) for r in runners]
    for r, t in zip(runners, threads, strict=True):
        r.start()
        t.start()
    try:
        deadline = time.monotonic() + 60
        while any(agent.service.status(p).project_status != "pending_evaluation"
                  for p in projects):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        for r, t in zip(runners, threads, strict=True):
            t.join()
            r.stop()
    repo = agent.container.metadata_repo()
    for p in projects:
        assert len(repo.list_models(p)) == 1
        claims = [e for e in repo.recent_logs(p, 100) if e.message == "training job claimed"]
        assert len(claims) == 1


def test_exit_causes_read_well():
    assert exit_cause(-9) == ("was killed by signal SIGKILL (killed: out of memory, or by an "
                              "operator)")
    assert exit_cause(-15) == "was killed by signal SIGTERM"
    assert exit_cause(3) == "exited with code 3"
    assert exit_cause(0) == "exited before the job finished"
