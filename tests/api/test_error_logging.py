"""Issue 9, item 8: a client error is one log line at INFO or WARNING, not an uncaught
exception with a traceback; a server error still logs its traceback. Through the real app."""

from __future__ import annotations

import logging
import uuid

import pytest

KEY = "s3cret-key-value"
H = {"X-API-Key": KEY}
MISSING = str(uuid.uuid4())


@pytest.fixture
def agent(make_agent):
    return make_agent(api_key=KEY)


def calls(pid: str) -> list[tuple[str, int, str, str, dict]]:
    """(method, expected status, path, JSON body or raw, headers)"""
    return [
        ("GET", 401, f"/agents/training/status/{pid}", None, {}),
        ("POST", 401, "/agents/training/start", {"project_id": pid}, {"X-API-Key": "wrong"}),
        ("GET", 404, f"/agents/training/status/{MISSING}", None, H),
        ("GET", 404, "/no/such/route", None, H),
        ("GET", 422, "/agents/training/status/not-a-uuid", None, H),
        ("POST", 422, "/agents/training/start", {"project_id": pid, "config": {"epochz": 1}}, H),
        ("POST", 422, "/agents/training/start", {"project_id": pid, "colour": "red"}, H),
        ("POST", 400, "/agents/training/start", b"{not json", H),
        ("POST", 409, f"/agents/training/cancel/{pid}", None, H),
    ]


def test_client_errors_log_one_line_without_a_traceback(agent, caplog):
    pid = agent.project()
    for method, expected, path, body, headers in calls(pid):
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
            r = agent.client.request(method, path, headers=headers,
                                     **(kwargs if body is not None else {}))
        assert r.status_code == expected, (path, r.text)
        records = [rec for rec in caplog.records if rec.name.startswith("litestar")]
        assert len(records) == 1, (path, caplog.text)
        [record] = records
        level = logging.WARNING if expected == 401 else logging.INFO
        assert record.levelno == level and record.exc_info is None, (path, caplog.text)
        line = record.getMessage()
        assert f"-> {expected} " in line and "\n" not in line and len(line) < 700, line
        assert "Uncaught exception" not in caplog.text and "Traceback" not in caplog.text
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text


def test_a_server_error_still_logs_its_traceback(agent, caplog, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(agent.service, "status", broken)
    with caplog.at_level(logging.INFO):
        r = agent.client.get(f"/agents/training/status/{MISSING}", headers=H)
    assert r.status_code == 500
    [record] = [rec for rec in caplog.records if rec.name.startswith("litestar")]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "RuntimeError: a bug" in caplog.text
