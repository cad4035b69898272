"""`serve` killed with SIGKILL leaves its worker training (reparented to init): a restarted
`serve` adopts it, so MAX_CONCURRENT_JOBS still holds, can cancel it, and fails at once a job
whose worker has gone meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from training_agent.testing.datasets import make_dataset_zip

from .agent_process import CLI, agent_env, alive, create_project, free_port, needs_trainer

pytestmark = pytest.mark.slow
START = "/agents/training/start"


def _serve(home: Path, port: int) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    log = open(home.parent / f"serve-{port}-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)],
                            env=agent_env(home, MAX_CONCURRENT_JOBS="1"), stdout=log,
                            stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "serve exited"
        try:
            if client.get("/health").status_code == 200:
                return proc, client
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.2)


def _status(api: httpx.Client, project_id: str) -> dict:  # type: ignore[type-arg]
    return api.get(f"/agents/training/status/{project_id}").json()


def _wait(api: httpx.Client, project_id: str, done, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while not done(view := _status(api, project_id)):
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    return view


def _worker_of(api: httpx.Client, project_id: str) -> int:
    """The worker's pid, from the store's heartbeat owner (`serve@host:port/pid:N`)."""
    import sqlite3

    home = Path(os.environ["_TA_HOME"])
    conn = sqlite3.connect(home / "training-agent.sqlite3")
    try:
        [(owner,)] = conn.execute("SELECT worker_id FROM training_jobs WHERE project_id = ? AND "
                                  "state = 'training'", (project_id,)).fetchall()
    finally:
        conn.close()
    return int(owner.rsplit("/pid:", 1)[1])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("_TA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def small_zip(tmp_path: Path) -> Path:
    return make_dataset_zip(tmp_path / "shapes.zip", classes=2, size=32,
                            per_class={"train": 8, "val": 2})


def _kill_all(*procs: subprocess.Popen[bytes], pids: tuple[int, ...] = ()) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@needs_trainer
def test_a_restarted_serve_adopts_its_predecessors_live_worker(home, small_zip):
    first, second = (create_project(home, small_zip, name=n, epochs=500, early_stopping_patience=None) for n in ("a", "b"))
    port = free_port()
    old, api = _serve(home, port)
    new = None
    orphan = 0
    try:
        assert api.post(START, json={"project_id": first}).status_code == 202
        _wait(api, first, lambda v: (v["job"] or {}).get("progress", {}).get("epoch"))
        orphan = _worker_of(api, first)
        old.send_signal(signal.SIGKILL)
        old.wait()
        time.sleep(1)
        assert alive(orphan)  # reparented to init, still training

        new, api = _serve(home, port)
        health = api.get("/health").json()
        assert health["checks"]["runner"]["detail"].startswith("1 running"), health
        assert api.post(START, json={"project_id": second}).status_code == 202
        time.sleep(4)  # a runner that forgot the orphan would start the second job now
        assert _status(api, second)["job"]["state"] == "queued"
        assert _status(api, first)["job"]["state"] == "training"

        t0 = time.monotonic()
        assert api.post(f"/agents/training/cancel/{first}").status_code == 202
        while alive(orphan):
            assert time.monotonic() - t0 < 15, "the adopted worker outlived its cancel"
            time.sleep(0.1)
        assert _status(api, first)["job"]["state"] == "cancelled"
        _wait(api, second, lambda v: v["job"]["state"] not in ("queued",), timeout=30)
        api.post(f"/agents/training/cancel/{second}")
    finally:
        _kill_all(old, *([new] if new else []), pids=(orphan,) if orphan else ())


@needs_trainer
def test_a_restarted_serve_fails_at_once_a_job_whose_worker_is_gone(home, small_zip):
    project = create_project(home, small_zip, name="gone", epochs=500, early_stopping_patience=None)
    port = free_port()
    old, api = _serve(home, port)
    new = None
    try:
        assert api.post(START, json={"project_id": project}).status_code == 202
        _wait(api, project, lambda v: (v["job"] or {}).get("progress", {}).get("epoch"))
        orphan = _worker_of(api, project)
        old.send_signal(signal.SIGKILL)
        os.kill(orphan, signal.SIGKILL)
        old.wait()
        while alive(orphan):
            time.sleep(0.05)

        new, api = _serve(home, port)
        view = _status(api, project)  # at start, not after the 2-minute stale sweep
        assert view["project_status"] == "training_failed", view
        assert view["job"]["error"] == (f"worker process {orphan} is gone: the agent stopped "
                                        "while the job ran")
        assert api.post(START, json={"project_id": project, "config": {"epochs": 1}}
                        ).status_code == 202
    finally:
        _kill_all(old, *([new] if new else []))
