"""Real agent processes for end-to-end tests: the CLI, `serve` on a free loopback port, the DB."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from training_agent.testing import processes
from training_agent.testing.processes import (
    alive,  # noqa: F401  (the e2e tests import it from here)
    free_port,  # noqa: F401  (as alive)
)

CLI = [sys.executable, "-m", "training_agent.entrypoints.cli"]
TINY = {"pretrained": False, "epochs": 1, "image_size": 32, "batch_size": 8,
        "backbone": "resnet18"}

needs_trainer = pytest.mark.skipif(
    importlib.util.find_spec("training_agent.adapters.trainers.pytorch") is None,
    reason="the PyTorch trainer is not on this branch yet")


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MCP_API_KEY", "NOTIFY_WEBHOOK_URL", "DATABASE_URL", "SUPABASE_URL",
                        "MODEL_STORE_URL", "GCP_BUCKET_NAME")}
    return {**env, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "INFO", **extra}


def cli(home: Path, *args: str) -> str:
    proc = subprocess.run([*CLI, *args], env=agent_env(home), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def create_project(home: Path, dataset: Path, name: str = "e2e", **config: Any) -> str:
    import json

    out = cli(home, "project", "create", "--name", name, "--dataset", str(dataset),
              "--config", json.dumps(TINY | config))
    return out.strip().splitlines()[-1]


@contextmanager
def serving(home: Path, **env: str) -> Iterator[httpx.Client]:
    """`training-agent serve` as a real process; yields a client on its base URL."""
    with processes.serving(agent_env(home, **env), home.parent) as client:
        yield client


def wait_until(client: httpx.Client, project_id: str, done: Callable[[dict[str, Any]], bool],
               timeout: float = 300, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/agents/training/status/{project_id}", headers=headers).json()
        if done(view):
            return view
        assert time.monotonic() < deadline, f"gave up waiting: {view}"
        time.sleep(0.3)


def db_rows(home: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    conn = sqlite3.connect(home / "training-agent.sqlite3")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def worker_pid(home: Path, job_id: str) -> int | None:
    [row] = db_rows(home, "SELECT worker_id FROM training_jobs WHERE id = ?", job_id)
    owner = row["worker_id"] or ""
    return int(owner.rsplit("/pid:", 1)[1]) if "/pid:" in owner else None

