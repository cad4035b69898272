"""Settings: which store each setting picks (DESIGN.md's precedence), and the test environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_supabase_variables_enable_the_live_test_and_reach_no_other_test():
    """SUPABASE_URL/SUPABASE_KEY (issue 4's words) run the live test: tests/conftest.py hands
    them to TEST_SUPABASE_* and clears them for everything else."""
    env = {**os.environ, "SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_KEY": "k1"}
    env.pop("TEST_SUPABASE_URL", None)
    env.pop("TEST_SUPABASE_KEY", None)
    probe = ("import json, os, tests.conftest; print(json.dumps({k: os.environ.get(k) for k in "
             "('SUPABASE_URL', 'SUPABASE_KEY', 'TEST_SUPABASE_URL', 'TEST_SUPABASE_KEY')}))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == {"SUPABASE_URL": None, "SUPABASE_KEY": None,
                               "TEST_SUPABASE_URL": "https://ref.supabase.co",
                               "TEST_SUPABASE_KEY": "k1"}

    env["TEST_SUPABASE_URL"] = "https://other.supabase.co"  # an explicit test project wins
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out)["TEST_SUPABASE_URL"] == "https://other.supabase.co"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "GCP_BUCKET_NAME",
                 "MODEL_STORE_URL", "NOTIFY_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
