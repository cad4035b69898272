"""An MCP client that goes away (its session ends: the SDK closes the server's stdin, then
signals its process group) leaves no job active: `training-agent mcp` fails its jobs on exit,
as `serve` does, with the cause in agent_logs."""

from __future__ import annotations

import sys
import time

import anyio
import pytest
from mcp import Client, StdioServerParameters

from training_agent.testing.datasets import make_dataset_zip

from .agent_process import agent_env, alive, create_project, db_rows, needs_trainer, worker_pid

pytestmark = pytest.mark.slow


@needs_trainer
def test_a_disconnected_mcp_client_leaves_its_job_failed_not_training(tmp_path):
    home = tmp_path / "home"
    dataset = make_dataset_zip(tmp_path / "d.zip", classes=2, size=32,
                               per_class={"train": 8, "val": 2})
    project_id = create_project(home, dataset, name="mcp-gone", epochs=500, early_stopping_patience=None)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "training_agent.entrypoints.cli", "mcp"],
        env=agent_env(home, LOG_LEVEL="WARNING"))

    async def session() -> str:
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"project_id": project_id})
            assert not started.is_error, started.content
            deadline = time.monotonic() + 120
            while True:
                status = (await client.call_tool("training_status",
                                                 {"project_id": project_id})).structured_content
                if (status["job"] or {}).get("progress", {}).get("epoch"):
                    return started.structured_content["job_id"]
                assert time.monotonic() < deadline, status
                await anyio.sleep(0.3)
        # leaving the block is the client going away

    job_id = anyio.run(session)
    pid = worker_pid(home, job_id)
    gone = time.monotonic()
    while True:
        [job] = db_rows(home, "SELECT state, error FROM training_jobs WHERE id = ?", job_id)
        if job["state"] != "training":
            break
        assert time.monotonic() - gone < 20, "the job stayed `training` after the client left"
        time.sleep(0.2)
    assert job["state"] == "failed", dict(job)
    assert "the agent stopped while the job ran" in job["error"]
    [project] = db_rows(home, "SELECT status FROM projects WHERE id = ?", project_id)
    assert project["status"] == "training_failed"
    [log] = db_rows(home, "SELECT message FROM agent_logs WHERE project_id = ? AND level = "
                          "'error'", project_id)
    assert "the agent stopped while the job ran" in log["message"]
    assert pid is not None and not alive(pid)


def _parent_of(pid: int) -> int:
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[1])


@needs_trainer
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_an_mcp_server_told_to_stop_fails_its_job_before_it_exits(tmp_path, signame):
    # clients that end a session by signalling the server itself (not its process group), or
    # a terminal that closes (SIGHUP)
    import os
    import signal

    home = tmp_path / "home"
    dataset = make_dataset_zip(tmp_path / "d.zip", classes=2, size=32,
                               per_class={"train": 8, "val": 2})
    project_id = create_project(home, dataset, name="mcp-stopped", epochs=500, early_stopping_patience=None)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "training_agent.entrypoints.cli", "mcp"],
        env=agent_env(home, LOG_LEVEL="WARNING"))
    found: dict[str, int | str] = {}

    async def session() -> None:
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"project_id": project_id})
            job_id = started.structured_content["job_id"]
            deadline = time.monotonic() + 120
            while not ((await client.call_tool("training_status", {"project_id": project_id})
                        ).structured_content["job"] or {}).get("progress", {}).get("epoch"):
                assert time.monotonic() < deadline
                await anyio.sleep(0.3)
            worker = worker_pid(home, job_id)
            assert worker is not None
            server = _parent_of(worker)
            found.update(job_id=job_id, worker=worker, server=server)
            os.kill(server, getattr(signal, signame))
            deadline = time.monotonic() + 20
            while alive(server):
                assert time.monotonic() < deadline, "the server did not stop"
                await anyio.sleep(0.1)

    anyio.run(session)
    [job] = db_rows(home, "SELECT state, error FROM training_jobs WHERE id = ?", found["job_id"])
    assert job["state"] == "failed", dict(job)
    assert "the agent stopped while the job ran" in job["error"]
    [project] = db_rows(home, "SELECT status FROM projects WHERE id = ?", project_id)
    assert project["status"] == "training_failed"
    assert not alive(int(found["worker"]))
