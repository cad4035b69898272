"""What a person sees from `project list`, `project show` and `config` (issue 12)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from training_agent.domain.models import JobState, ModelRecord, Project, TrainingJob, utcnow
from training_agent.entrypoints import cli
from training_agent.entrypoints.container import build_container
from training_agent.entrypoints.settings import Settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    return tmp_path / "home"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli.main, list(args))
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def three_projects() -> tuple[Project, Project, Project]:
    """`cats` (oldest, a job that succeeded at 0.8125), `dogs` (a failed job), `birds` (new)."""
    repo = build_container(Settings()).metadata_repo()
    now = utcnow()
    made = []
    for age, name in ((3, "cats"), (2, "dogs"), (1, "birds")):
        made.append(repo.add_project(Project(name=name, created_at=now - timedelta(minutes=age))))
    cats, dogs, birds = made
    job = repo.claim_job(TrainingJob(project_id=cats.id), None)
    for state in (JobState.DOWNLOADING, JobState.PREPARING, JobState.TRAINING,
                  JobState.UPLOADING, JobState.RECORDING, JobState.SUCCEEDED):
        job.advance(state)
    job.progress = {"metrics": {"test_accuracy": 0.8125, "val_accuracy": 0.9}}
    repo.record_model(ModelRecord(project_id=cats.id, name="cats_model",
                                  gcs_url="file:///m/model.pth", accuracy=0.8125), job)
    failed = repo.claim_job(TrainingJob(project_id=dogs.id), None)
    failed.fail("boom")
    repo.save_job(failed)
    return cats, dogs, birds


def test_project_list_shows_newest_first_with_the_last_job_and_its_accuracy(home):
    cats, dogs, birds = three_projects()
    lines = run("project", "list").splitlines()
    assert lines[0].split() == ["created", "name", "id", "status", "last", "job", "accuracy"]
    rows = [line.split() for line in lines[1:]]
    assert [r[2:] for r in rows] == [  # after the date and time
        ["birds", birds.id, "pending_training", "-", "-"],
        ["dogs", dogs.id, "training", "failed", "-"],
        ["cats", cats.id, "pending_evaluation", "succeeded", "0.8125"],
    ]
    # the columns line up: every id starts where the header's does
    assert {line.index(p.id) for line, p in zip(lines[1:], (birds, dogs, cats), strict=True)
            } == {
        lines[0].index("id")}


def test_project_list_pages_and_says_how_to_get_the_next_page(home):
    cats, dogs, birds = three_projects()
    out = run("project", "list", "--limit", "2")
    assert [line.split()[2] for line in out.splitlines()[1:3]] == ["birds", "dogs"]
    assert out.splitlines()[-1] == "more: training-agent project list --offset 2"
    out = run("project", "list", "--limit", "2", "--offset", "2")
    assert "cats" in out and "more:" not in out and "birds" not in out


def test_project_list_json_is_the_api_page(home):
    cats, _, _ = three_projects()
    page = json.loads(run("project", "list", "--json", "--limit", "2", "--offset", "2"))
    assert (page["limit"], page["offset"], page["next_offset"]) == (2, 2, None)
    [only] = page["projects"]
    assert (only["id"], only["name"], only["status"]) == (cats.id, "cats", "pending_evaluation")
    assert (only["last_job"]["state"], only["last_job"]["accuracy"]) == ("succeeded", 0.8125)


def test_project_list_when_there_is_none(home):
    assert run("project", "list").strip() == (
        "no projects; create one with `training-agent project create`")


def test_project_show(home, dataset_zip):
    out = run("project", "create", "--name", "shapes", "--dataset", str(dataset_zip),
              "--config", '{"epochs": 3}')
    project_id = out.splitlines()[-1]
    lines = run("project", "show", project_id).splitlines()
    assert lines[0] == f"project shapes ({project_id})"
    assert lines[1] == "status: pending_training"
    assert lines[3].startswith("dataset: file://") and lines[3].endswith("shapes.zip")
    assert lines[4] == 'config: {"epochs": 3}'
    assert lines[5] == "last job: none yet"
    cats, _, _ = three_projects()
    out = run("project", "show", cats.id)
    assert "last job: " in out and "succeeded, accuracy 0.8125" in out
    assert "model: file:///m/model.pth (accuracy 0.8125)" in out


def test_project_show_of_a_missing_project_is_one_line(home):
    result = CliRunner().invoke(cli.main, ["project", "show",
                                           "4b1f3f5e-0000-4000-8000-000000000000"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_config_lists_every_knob_and_config_schema_is_its_json_schema(home):
    from training_agent.domain.config import TrainingConfig

    text = run("config")
    for name in TrainingConfig.model_fields:
        assert f"\n- {name} (" in text
    assert '- epochs (integer >= 1, <= 1000 | "auto"; default "auto"): ' in text
    assert '- lr (number > 0, <= 10 | null; default null): learning rate' in text
    schema = json.loads(run("config", "--schema"))
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(TrainingConfig.model_fields)
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name  # one line of meaning for every knob
        assert "default" in prop, name
    epochs = schema["properties"]["epochs"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 1000} in epochs
    batch = schema["properties"]["batch_size"]
    assert {"type": "integer", "minimum": 1, "maximum": 4096} in batch["anyOf"]
    assert batch["default"] == "auto"
