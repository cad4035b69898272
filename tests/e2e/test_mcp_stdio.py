"""`training-agent mcp` as a real process, driven over stdio by the SDK's client."""

from __future__ import annotations

import sys
import time

import anyio
import pytest
from mcp import Client, StdioServerParameters

from training_agent.testing.datasets import make_dataset_zip

from .agent_process import TINY, agent_env, create_project, needs_trainer

pytestmark = pytest.mark.slow


@needs_trainer
def test_mcp_over_stdio_gets_a_model_trained(tmp_path):
    home = tmp_path / "home"
    dataset = make_dataset_zip(tmp_path / "d.zip", classes=2, size=32,
                               per_class={"train": 6, "val": 2})
    project_id = create_project(home, dataset, name="mcp-e2e")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "training_agent.entrypoints.cli", "mcp"],
        env=agent_env(home, LOG_LEVEL="WARNING"))

    async def session() -> dict:
        async with Client(params) as client:
            found = (await client.call_tool("list_backbones", {
                "filter": TINY["backbone"], "provider": "torchvision"})).structured_content
            assert TINY["backbone"] in [b["name"] for b in found["backbones"]]
            started = await client.call_tool("start_training", {"project_id": project_id})
            assert not started.is_error, started.content
            deadline = time.monotonic() + 300
            while True:
                status = (await client.call_tool("training_status",
                                                 {"project_id": project_id})).structured_content
                if status["project_status"] in ("pending_evaluation", "training_failed"):
                    return status
                assert time.monotonic() < deadline, status
                await anyio.sleep(0.5)

    status = anyio.run(session)
    assert status["project_status"] == "pending_evaluation", status
    assert status["job"]["state"] == "succeeded"
    assert status["job"]["model_url"].endswith("/model.pth")
