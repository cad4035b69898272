"""The MCP tool server driven by the SDK's client (in-process), sharing container and runner."""

from __future__ import annotations

import time

import anyio
from mcp import Client

from training_agent.entrypoints.mcp_server import build_mcp_server


def test_mcp_tools_train_a_model_and_report_errors(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid = agent.project(config={"epochs": 2})
    server = build_mcp_server(agent.service, agent.runner)

    async def session() -> None:
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools >= {"start_training", "training_status", "cancel_training",
                             "list_backbones", "dataset_report"}

            backbones = (await client.call_tool("list_backbones", {})).structured_content
            assert backbones["backbones"] == [{"provider": "fake", "name": "tiny",
                                               "pretrained": None, "size": None,
                                               "note": None}]
            assert backbones["providers"] == {"fake": 1} and backbones["total"] == 1

            started = await client.call_tool("start_training",
                                             {"project_id": pid, "config": {"epochs": 3}})
            assert not started.is_error
            job = started.structured_content
            assert job["project_id"] == pid and job["state"] == "queued"

            again = await client.call_tool("start_training", {"project_id": pid})
            assert again.is_error and "Conflict" in again.content[0].text

            deadline = time.monotonic() + 60
            while True:
                status = (await client.call_tool("training_status",
                                                 {"project_id": pid})).structured_content
                if status["project_status"] == "pending_evaluation":
                    break
                assert time.monotonic() < deadline, status
                await anyio.sleep(0.1)
            assert status["job"]["id"] == job["job_id"]
            assert status["job"]["progress"]["epoch"] == 3
            assert status["job"]["model_url"].endswith("model.pth")
            metrics = status["job"]["metrics"]
            assert metrics["val_accuracy"] == 0.75 and "test_accuracy" not in metrics
            assert metrics["epochs_run"] == 3 and metrics["stop_reason"] == "epochs"
            assert set(metrics["per_class"]) == {"class_a", "class_b"}
            assert set(metrics["per_class"]["class_a"]) >= {"precision", "recall", "f1"}
            assert metrics["verdict"]["level"] == "ok"
            assert "well above chance" in status["job"]["summary"]
            # the fake trainer writes no reports: the tool says why, naming the job
            none = await client.call_tool("dataset_report", {"project_id": pid})
            assert none.is_error and f"job {job['job_id']}" in none.content[0].text
            assert "has no dataset report" in none.content[0].text

            bad = await client.call_tool("training_status", {"project_id": "nope"})
            assert bad.is_error and "not a UUID" in bad.content[0].text
            idle = await client.call_tool("cancel_training", {"project_id": pid})
            assert idle.is_error and "no active training job" in idle.content[0].text

    anyio.run(session)
    [model] = agent.container.metadata_repo().list_models(pid)
    assert model.metadata["job_id"]


def test_mcp_cancel_stops_the_job(make_agent):
    agent = make_agent(epoch_seconds=1.0)
    pid = agent.project(config={"epochs": 30})
    server = build_mcp_server(agent.service, agent.runner)

    async def session() -> None:
        async with Client(server) as client:
            await client.call_tool("start_training", {"project_id": pid})
            while (await client.call_tool("training_status", {"project_id": pid})
                   ).structured_content["job"]["state"] == "queued":
                await anyio.sleep(0.1)
            cancelled = await client.call_tool("cancel_training", {"project_id": pid})
            assert cancelled.structured_content["state"] == "cancelled"

    anyio.run(session)
    assert agent.status(pid)["project_status"] == "training_cancelled"
    agent.wait_for(pid, lambda v: not agent.runner.running_jobs(), timeout=8)
