"""Issue 9, item 9: a deeply nested JSON body is a 400 like any invalid body (not a 500 from a
RecursionError), and a body over 1 MiB is a 413, through the real app."""

from __future__ import annotations

import logging

import pytest

START = "/agents/training/start"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("body", [
    b'{"a":' * 5000,
    b"[" * 100_000,
    b"[" * 2000 + b"]" * 2000,  # well-formed, still too deep
    b'{"project_id": "x", "config": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
], ids=["objects-5000", "arrays-100000", "closed-arrays-2000", "deep-config"])
def test_deeply_nested_json_is_a_400(make_agent, caplog, body):
    agent = make_agent()
    with caplog.at_level(logging.INFO):
        r = agent.client.post(START, content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "the JSON body is nested too deeply"
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text
    assert agent.client.get("/health").status_code == 200  # and the app answers on


def test_a_body_over_1_mib_is_a_413(make_agent):
    agent = make_agent()
    big = b'{"project_id": "' + b"a" * (1024 * 1024) + b'"}'
    assert agent.client.post(START, content=big, headers=JSON).status_code == 413

    def chunks():  # no Content-Length: counted as it streams in
        yield b'{"project_id": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}'

    assert agent.client.post(START, content=chunks(), headers=JSON).status_code == 413


def test_a_body_under_the_cap_is_still_read(make_agent):
    agent = make_agent()
    pid = agent.project()
    padded = b'{"project_id": "%s", ' % pid.encode() + b" " * 1_000_000 + b'"config": {"epochz": 1}}'
    r = agent.client.post(START, content=padded, headers=JSON)
    assert r.status_code == 422 and "epochz: unknown key" in r.text  # read and validated
