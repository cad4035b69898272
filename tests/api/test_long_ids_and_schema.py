"""Issue 9, item 12 (parts): a 10 kB project_id (or key) is not echoed whole in a 422, and the
OpenAPI document says project_id is a UUID, so schema-driven clients send one."""

from __future__ import annotations

import pytest

START = "/agents/training/start"
LONG = "a" * 10_000


@pytest.mark.parametrize("method, path, body", [
    ("POST", START, {"project_id": LONG}),
    ("GET", f"/agents/training/status/{LONG}", None),
    ("POST", f"/agents/training/cancel/{LONG}", None),
])
def test_a_10kb_project_id_is_refused_without_being_echoed_whole(make_agent, method, path, body):
    agent = make_agent()
    r = agent.client.request(method, path, **({"json": body} if body else {}))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail == f"project_id '{'a' * 40}'… (10000 characters) is not a UUID"
    assert len(r.content) < 300


@pytest.mark.parametrize("body", [
    lambda pid: {"project_id": pid, LONG: 1},  # an unknown field named by Litestar
    lambda pid: {"project_id": pid, "config": {LONG: 1}},  # an unknown config key
    lambda pid: {"project_id": pid, "config": {"epochs": LONG}},  # a bad config value
])
def test_other_long_input_is_not_echoed_whole_either(make_agent, body):
    agent = make_agent()
    r = agent.client.post(START, json=body(agent.project()))
    assert r.status_code == 422 and len(r.content) < 2500, len(r.content)
    assert "characters)" in r.text


def test_a_short_bad_id_is_still_shown_whole(make_agent):
    r = make_agent().client.get("/agents/training/status/0")
    assert r.status_code == 422 and r.json()["detail"] == "project_id '0' is not a UUID"


def test_openapi_says_project_id_is_a_uuid(make_agent):
    schema = make_agent().client.get("/schema/openapi.json").json()
    for path in ("/agents/training/status/{project_id}", "/agents/training/cancel/{project_id}"):
        [op] = schema["paths"][path].values()
        [param] = [p for p in op["parameters"] if p["name"] == "project_id"]
        assert param["in"] == "path"
        assert param["schema"] == {"type": "string", "format": "uuid",
                                   "description": "the project's id (a UUID)"}
    start = schema["components"]["schemas"]["StartRequest"]["properties"]["project_id"]
    assert start["type"] == "string" and start["format"] == "uuid"
