"""`Idempotency-Key` on a start: a retried start returns the first one's job, never a second."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import anyio
from mcp import Client

from training_agent.entrypoints.mcp_server import build_mcp_server

START = "/agents/training/start"


def test_a_retried_start_with_its_key_returns_the_same_job_even_after_it_finished(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid = agent.project()
    key = {"Idempotency-Key": "0b6f3b52-retry-me"}

    first = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 2}},
                              headers=key)
    assert first.status_code == 202, first.text
    again = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 2}},
                              headers=key)
    assert again.status_code == 202, again.text  # not a 409: it is the same request
    assert again.json()["job_id"] == first.json()["job_id"]
    without = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 2}})
    assert without.status_code == 409  # no key: a second start is still refused

    done = agent.wait_status(pid, "pending_evaluation")
    assert done["job"]["id"] == first.json()["job_id"]
    late = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 2}},
                             headers=key)
    assert late.status_code == 202 and late.json()["job_id"] == first.json()["job_id"]
    assert late.json()["state"] == "succeeded"  # the job as it is now; nothing trained again
    repo = agent.container.metadata_repo()
    assert len(repo.list_models(pid)) == 1
    assert agent.service.status(pid).job.id == first.json()["job_id"]


def test_concurrent_starts_with_one_key_all_get_the_one_job(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid = agent.project()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: agent.client.post(
            START, json={"project_id": pid}, headers={"Idempotency-Key": "race-1"}), range(12)))
    assert [r.status_code for r in answers] == [202] * 12, [r.text for r in answers]
    assert len({r.json()["job_id"] for r in answers}) == 1
    agent.wait_status(pid, "pending_evaluation")
    assert len(agent.container.metadata_repo().list_models(pid)) == 1


def test_a_key_reused_for_another_request_is_a_422_that_says_so(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid, other = agent.project(), agent.project(name="other")
    key = {"Idempotency-Key": "used-once"}
    first = agent.client.post(START, json={"project_id": pid}, headers=key)
    assert first.status_code == 202
    for body in ({"project_id": pid, "config": {"epochs": 3}},  # another config
                 {"project_id": other},  # another project
                 {"project_id": pid, "force": True}):
        r = agent.client.post(START, json=body, headers=key)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "Idempotency-Key 'used-once' was already used for a different start" in detail
        assert first.json()["job_id"] in detail and "new key" in detail
    assert agent.service.status(other).job is None  # nothing queued for the other project


def test_bad_keys_are_422s_naming_the_header(make_agent):
    agent = make_agent()
    pid = agent.project()
    for key, words in (("k" * 256, "256 characters; at most 255"),
                       ("  ", "is empty"), ("caf\u00e9", "printable ASCII")):
        r = agent.client.post(START, json={"project_id": pid},
                              headers={"Idempotency-Key": key.encode()})
        assert r.status_code == 422 and words in r.json()["detail"], (key, r.text)
    assert agent.service.status(pid).job is None


def test_the_openapi_document_lists_the_header(make_agent):
    agent = make_agent()
    schema = agent.client.get("/schema/openapi.json").json()
    params = schema["paths"][START]["post"]["parameters"]
    [header] = [p for p in params if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header" and header["required"] is False
    assert "same key" in header["description"]


def test_the_mcp_start_tool_takes_an_idempotency_key(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid = agent.project()
    server = build_mcp_server(agent.service, agent.runner)

    async def session() -> None:
        async with Client(server) as client:
            args = {"project_id": pid, "idempotency_key": "mcp-1"}
            first = await client.call_tool("start_training", args)
            again = await client.call_tool("start_training", args)
            assert not first.is_error and not again.is_error, again.content
            assert again.structured_content["job_id"] == first.structured_content["job_id"]
            other = await client.call_tool("start_training", {**args, "config": {"epochs": 3}})
            assert other.is_error and "already used for a different start" in (
                other.content[0].text)

    anyio.run(session)
    agent.wait_status(pid, "pending_evaluation")
