"""The CLI's answers that need no training: run in-process with click's runner, no network."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from training_agent.entrypoints import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return tmp_path / "home"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.stderr


def test_db_migrate_with_supabase_refuses_and_points_to_the_ways_that_work(home, monkeypatch):
    # the adapter is built but never called: a real project here would show a network error
    monkeypatch.setenv("SUPABASE_URL", "https://nowhere.invalid")
    monkeypatch.setenv("SUPABASE_KEY", "service-role-key")
    code, err = invoke("db", "migrate")
    assert code == 1
    [line] = err.strip().splitlines()
    assert "SupabaseMetadataRepo" in line and "supabase db push" in line
    assert "psql" in line and "DATABASE_URL=" in line and "docs/cloud.md" in line
    assert "schema is up to date" not in err


def test_db_migrate_with_the_supabase_store_refuses(home, monkeypatch):
    """PostgREST cannot run DDL: the container has no schema migrator for Supabase."""
    monkeypatch.setenv("SUPABASE_URL", "https://example.invalid")
    monkeypatch.setenv("SUPABASE_KEY", "not-a-real-key")
    code, err = invoke("db", "migrate")
    assert code == 1 and "SupabaseMetadataRepo" in err and "supabase db push" in err
    assert "not-a-real-key" not in err


def test_db_migrate_on_sqlite_still_reports_what_it_applied(home):
    result = CliRunner().invoke(cli.main, ["db", "migrate"])
    assert result.exit_code == 0 and "schema is up to date" in result.stdout


@pytest.mark.parametrize("env, named", [
    ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS=0"),
    ({"MAX_CONCURRENT_JOBS": "many"}, "MAX_CONCURRENT_JOBS=many"),
    ({"TRAINING_AGENT_MAX_DATASET_MEMBERS": "-1"}, "TRAINING_AGENT_MAX_DATASET_MEMBERS=-1"),
])
def test_bad_settings_are_one_line_naming_the_variable_and_exit_2(home, monkeypatch, env, named):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli.main, ["status", "00000000-0000-4000-8000-000000000000"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid settings: ") and named in line
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("url", ["s3://b/ds.zip?X-Amz-Signature=abc",
                                 "gs://b/x.zip?X-Goog-Signature=abc",
                                 "file:///d.zip?token=abc", "s3://b/ds.zip#abc"])
def test_project_create_refuses_a_token_in_the_url_without_printing_it(home, url):
    result = CliRunner().invoke(cli.main, ["project", "create", "--name", "p", "--dataset", url])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: dataset URL refused: ") and url.split("?")[0].split("#")[0] in line
    assert "abc" not in result.stdout + result.stderr


def test_project_create_prints_a_url_without_user_info(home):
    url = "https://alice:abc@storage.googleapis.com/b/x.zip?X-Goog-Signature=abc"
    result = CliRunner().invoke(cli.main, ["project", "create", "--name", "p", "--dataset", url])
    assert result.exit_code == 0, result.output
    assert "dataset: https://storage.googleapis.com/b/x.zip" in result.stdout
    assert "abc" not in result.stdout + result.stderr


def test_project_create_stores_the_validated_config_with_only_the_keys_given(home, tmp_path):
    from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
    from training_agent.testing.datasets import make_dataset_zip

    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 2})
    result = CliRunner().invoke(cli.main, [
        "project", "create", "--name", "p", "--dataset", str(archive),
        "--config", '{"lr": 1, "max_minutes": 5, "epochs": 3, "pretrained": false}'])
    assert result.exit_code == 0, result.output
    project_id = result.stdout.strip().splitlines()[-1]
    stored = SqliteMetadataRepo(home / "training-agent.sqlite3").get_project(project_id)
    config = stored.training_config
    assert config == {"lr": 1.0, "max_minutes": 5.0, "epochs": 3, "pretrained": False}
    assert type(config["lr"]) is float and type(config["max_minutes"]) is float
    assert type(config["epochs"]) is int

    refused = CliRunner().invoke(cli.main, [
        "project", "create", "--name", "q", "--dataset", str(archive),
        "--config", '{"pretrained": "no"}'])
    assert refused.exit_code == 1 and "pretrained" in refused.stderr
