"""`serve` beyond loopback needs MCP_API_KEY, or the operator's explicit --allow-unauthenticated."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .agent_process import CLI, agent_env, free_port

pytestmark = pytest.mark.slow


def _serve(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "serve", *args], env=agent_env(home, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_on_all_interfaces_without_a_key_refuses_in_one_line(tmp_path):
    proc = _serve(tmp_path / "home", "--host", "0.0.0.0", "--port", str(free_port()))
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        _stop(proc)
        pytest.fail("serve --host 0.0.0.0 without MCP_API_KEY kept running (open to anyone)")
    assert proc.returncode == 2
    [line] = err.strip().splitlines()
    assert "0.0.0.0" in line and "MCP_API_KEY" in line and "--allow-unauthenticated" in line
    assert "anyone" in line


@pytest.mark.parametrize("args, env", [
    (["--allow-unauthenticated"], {}),
    ([], {"MCP_API_KEY": "k"}),
])
def test_serve_on_all_interfaces_runs_with_a_key_or_the_explicit_flag(tmp_path, args, env):
    port = free_port()
    proc = _serve(tmp_path / "home", "--host", "0.0.0.0", "--port", str(port), *args, **env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        start = httpx.post(f"http://127.0.0.1:{port}/agents/training/start", json={})
        assert start.status_code == (401 if env else 422)
    finally:
        _stop(proc)
