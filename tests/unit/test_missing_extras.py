"""Issue 9, item 13: a backend whose extra is not installed says which extra to install, in one
line, instead of a ModuleNotFoundError traceback. The missing package is simulated by a None in
sys.modules (what Python does for a module that cannot be imported)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.api.conftest import settings_for
from tests.fakes import fake_container
from training_agent.domain.models import JobState
from training_agent.entrypoints import cli
from training_agent.testing.datasets import make_dataset_zip

ADAPTERS = {"postgres": "training_agent.adapters.metadata.postgres",
            "supabase": "training_agent.adapters.metadata.supabase",
            "gcs": "training_agent.adapters.blobstore.gcs",
            "s3": "training_agent.adapters.blobstore.s3"}
MISSING = {"postgres": "psycopg_pool", "supabase": "supabase", "gcs": "google.auth.exceptions",
           "s3": "boto3"}


def without(extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, MISSING[extra], None)
    for name in [m for m in sys.modules if m.startswith(ADAPTERS[extra])]:
        monkeypatch.delitem(sys.modules, name)  # the adapter's modules, imported afresh


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return tmp_path / "home"


@pytest.mark.parametrize("extra, env, args", [
    ("postgres", {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db"},
     ["status", "00000000-0000-4000-8000-000000000000"]),
    ("supabase", {"SUPABASE_URL": "https://x.supabase.co", "SUPABASE_KEY": "service-role"},
     ["status", "00000000-0000-4000-8000-000000000000"]),
    ("gcs", {"MODEL_STORE_URL": "gs://bucket/prefix"}, ["project", "create", "--name", "p"]),
    ("s3", {"MODEL_STORE_URL": "s3://bucket/prefix"}, ["project", "create", "--name", "p"]),
])
def test_the_cli_names_the_extra_to_install(home, tmp_path, monkeypatch, extra, env, args):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    without(extra, monkeypatch)
    if args[0] == "project":  # a local zip is copied into the (cloud) model store
        args = [*args, "--dataset", str(make_dataset_zip(tmp_path / "d.zip", classes=2,
                                                         per_class={"train": 2}))]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"pip install 'training-agent[{extra}]'" in line
    assert MISSING[extra] in line and "Traceback" not in result.output


def test_a_job_whose_dataset_needs_a_missing_extra_fails_saying_which(tmp_path, monkeypatch):
    container = fake_container(settings_for(tmp_path / "home"))
    service = container.training_service()
    without("gcs", monkeypatch)
    project = service.create_project("p", "gs://bucket/datasets/x.zip", {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.FAILED
    assert "MissingExtra" in (job.error or "")
    assert "pip install 'training-agent[gcs]'" in (job.error or "")
