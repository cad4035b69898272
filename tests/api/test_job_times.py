"""A job's queued_at is when the start queued it; started_at is when a worker began it."""

from __future__ import annotations

from datetime import datetime

START = "/agents/training/start"


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_job_that_waits_in_the_queue_has_no_started_at_until_a_worker_begins(make_agent):
    agent = make_agent(epoch_seconds=0.6)  # one job at a time
    first, second = agent.project(name="first"), agent.project(name="second")
    assert agent.client.post(START, json={"project_id": first}).status_code == 202
    assert agent.client.post(START, json={"project_id": second}).status_code == 202

    waiting = agent.status(second)["job"]
    assert waiting["state"] == "queued"
    assert waiting["queued_at"] and waiting["started_at"] is None

    done_first = agent.wait_status(first, "pending_evaluation")["job"]
    done = agent.wait_status(second, "pending_evaluation")["job"]
    assert done["queued_at"] == waiting["queued_at"]
    # the second job began only once the first had finished: its queue time is not its start
    assert _t(done["started_at"]) >= _t(done_first["finished_at"])
    assert _t(done["started_at"]) - _t(done["queued_at"]) >= (
        _t(done_first["finished_at"]) - _t(done_first["started_at"]))
    assert _t(done["finished_at"]) >= _t(done["started_at"])
