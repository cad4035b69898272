"""MCP: list_projects (paged, newest first), serverInfo.version, the config's knobs in the
start_training description (issue 12)."""

from __future__ import annotations

import anyio
from mcp import Client

from training_agent import __version__
from training_agent.domain.config import TrainingConfig
from training_agent.entrypoints.mcp_server import build_mcp_server


def test_list_projects_version_and_the_config_knobs(make_agent):
    agent = make_agent()
    ids = [agent.project(name) for name in ("first", "second", "third")]
    server = build_mcp_server(agent.service, agent.runner)

    async def session() -> None:
        async with Client(server) as client:
            assert client.server_info is not None
            assert client.server_info.name == "training-agent"
            assert client.server_info.version == __version__ != ""
            tools = {t.name: t for t in (await client.list_tools()).tools}
            start = tools["start_training"].description or ""
            for name in TrainingConfig.model_fields:
                assert f"- {name} (" in start, name
            assert '- epochs (integer >= 1, <= 1000 | "auto"; default "auto")' in start

            page = (await client.call_tool("list_projects", {"limit": 2})).structured_content
            assert [p["name"] for p in page["projects"]] == ["third", "second"]
            assert page["next_offset"] == 2
            rest = (await client.call_tool("list_projects", {"offset": 2})).structured_content
            assert [p["id"] for p in rest["projects"]] == [ids[0]]
            assert rest["projects"][0]["last_job"] is None and rest["next_offset"] is None
            bad = await client.call_tool("list_projects", {"limit": 1000})
            assert bad.is_error and "limit must be an integer from 1 to 100" in \
                bad.content[0].text

    anyio.run(session)
