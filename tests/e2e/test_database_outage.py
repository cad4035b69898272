"""A Postgres outage mid-job, with a real `serve` and a real Postgres that the test stops and
starts: the API answers at once (503, /health within its budget, 401 without the database),
recovers within seconds of the database's return, and the job's failure is recorded with its
real cause once the store is back."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from training_agent.testing.datasets import make_dataset_zip

from .agent_process import CLI, TINY, agent_env, needs_trainer, serving, wait_until
from .pg_server import pg_server

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "outage-key"}


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


@needs_trainer
def test_a_database_outage_mid_job_is_answered_fast_and_recorded_once_it_returns(tmp_path):
    home = tmp_path / "home"
    dataset = make_dataset_zip(tmp_path / "shapes.zip", classes=2, size=32,
                               per_class={"train": 16, "val": 4})
    with pg_server() as pg:
        env = {"DATABASE_URL": pg.dsn, "MCP_API_KEY": "outage-key"}
        made = subprocess.run(
            [*CLI, "project", "create", "--name", "outage", "--dataset", str(dataset),
             "--config", json.dumps(TINY | {"epochs": 400})],
            env=agent_env(home, **env), capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        project_id = made.stdout.strip().splitlines()[-1]
        status_path = f"/agents/training/status/{project_id}"
        with serving(home, **env) as api:
            r = api.post("/agents/training/start", json={"project_id": project_id},
                         headers=KEY)
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]
            wait_until(api, project_id, lambda v: (v["job"] or {}).get("progress", {}).get(
                "epoch"), headers=KEY)

            pg.stop()
            with ThreadPoolExecutor(12) as pool:  # a dozen status calls in flight at once
                calls = [pool.submit(_timed, lambda: api.get(status_path, headers=KEY))
                         for _ in range(12)]
                time.sleep(0.3)
                health, health_s = _timed(lambda: api.get("/health"))
                denied, denied_s = _timed(lambda: api.get(status_path))
                answers = [c.result() for c in calls]
            assert denied.status_code == 401 and denied_s < 1.0, denied_s
            assert health.status_code == 503 and health_s < 6.0, health_s
            assert not health.json()["checks"]["metadata_store"]["ok"]
            assert health.json()["checks"]["runner"]["ok"]
            for answer, seconds in answers:
                assert answer.status_code == 503 and seconds < 6.0, (answer.text, seconds)
                assert "postgres" in answer.json()["detail"]
            time.sleep(6)  # the worker's next progress save meets the outage

            pg.start()
            back = time.monotonic()
            while api.get(status_path, headers=KEY).status_code != 200:
                assert time.monotonic() - back < 10, "status still 503 10 s after the return"
                time.sleep(0.2)
            view = wait_until(api, project_id, lambda v: v["project_status"] != "training",
                              timeout=60, headers=KEY)
            recorded_s = time.monotonic() - back
            assert api.get("/health").status_code == 200
            log = (home.parent / f"serve-{api.base_url.port}.log").read_text()
        # each 503 of the outage is one line, not an 'Uncaught exception' with its traceback
        assert "Uncaught exception" not in log and "-> 503 MetadataError" in log

        job = view["job"]
        assert view["project_status"] == "training_failed" and job["id"] == job_id
        assert job["state"] == "failed"
        # the real cause: the store went away under the worker, not a stale sweep's guess
        assert "MetadataError" in job["error"] and "postgres" in job["error"], job["error"]
        assert "heartbeat stale" not in job["error"] and "agent stopped" not in job["error"]
        assert recorded_s < 30, recorded_s
        with psycopg.connect(pg.dsn) as conn:
            [(level, message)] = conn.execute(
                "SELECT level, message FROM agent_logs WHERE project_id = %s AND level = "
                "'error'", (project_id,)).fetchall()
        assert message.startswith("training failed at step training: MetadataError")


def test_the_pg_server_helper_starts_and_stops(tmp_path: Path) -> None:
    with pg_server() as pg:
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=5)
        pg.start()
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
