"""Issue 9, item 1: a token in a dataset URL's query or fragment never reaches text.

Real parts: the dataset zip in moto's S3, the GCS emulator or a local folder, the container's
stores, the SQLite store, the Litestar app through its test client, and a real chat server
for the webhook. The `s3://`, `gs://` and `file://` schemes name an object by path alone, so
a query string or fragment is refused at `project create` and at start (422), and a dataset
row written by someone else with one fails its job, all without echoing the token."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from tests.api.conftest import settings_for
from tests.contract.conftest import AWS_TEST_ENV, BUCKET
from tests.contract.servers import FaultProxy
from tests.fakes import fake_container
from tests.integration.test_webhook_notifier import ChatServer
from training_agent.domain.errors import InvalidInput, StorageError
from training_agent.domain.models import Dataset, JobState, Project, ProjectStatus
from training_agent.entrypoints.http import create_app
from training_agent.entrypoints.worker.runner import JobRunner
from training_agent.testing.datasets import make_dataset_zip

TOKEN = "SECRET-t0ken-abc"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture(params=["s3-query", "gs-query", "file-query", "s3-fragment"])
def case(request: pytest.FixtureRequest, gcs_proxy: FaultProxy, s3_proxy: FaultProxy,
         chat: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(container, the dataset URL with a token, the same URL without it: an object that
    exists) on an agent whose stores are the real servers and whose webhook is `chat`."""
    gcs_proxy.reset()
    s3_proxy.reset()
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    settings = settings_for(tmp_path / "home", s3_endpoint_url=s3_proxy.url,
                            storage_emulator_host=gcs_proxy.url, notify_webhook_url=chat.url)
    container = fake_container(settings)
    folder = uuid.uuid4().hex
    clean, tail = {
        "s3-query": (f"s3://{BUCKET}/{folder}/ds.zip", f"?X-Amz-Signature={TOKEN}"),
        "gs-query": (f"gs://{BUCKET}/{folder}/x.zip", f"?X-Goog-Signature={TOKEN}"),
        "file-query": ((tmp_path / "d.zip").as_uri(), f"?token={TOKEN}"),
        "s3-fragment": (f"s3://{BUCKET}/{folder}/ds.zip", f"#token={TOKEN}"),
    }[request.param]
    archive = make_dataset_zip(tmp_path / "src.zip", classes=2, size=32,
                               per_class={"train": 2, "val": 1})
    container.blob_store().upload(archive, clean)  # the object the URL would name
    return container, clean + tail, clean


def test_a_token_in_a_dataset_url_is_refused_and_never_shown(case, chat, tmp_path):
    container, url, clean = case
    service, repo = container.training_service(), container.metadata_repo()
    what = "a fragment" if "#" in url else "a query string"

    # project create refuses it, naming the problem, not the token
    with pytest.raises(InvalidInput) as refused:
        service.create_project("p", url, {"epochs": 1})
    assert what in str(refused.value) and clean in str(refused.value)
    assert TOKEN not in str(refused.value)
    # so do the stores themselves, on the real servers
    with pytest.raises(StorageError) as store_refused:
        container.blob_store().download(url, tmp_path / "got.zip")
    assert what in str(store_refused.value) and TOKEN not in str(store_refused.value)
    assert not (tmp_path / "got.zip").exists()

    # a project row written by someone else (the orchestrator) with such a URL
    project = repo.add_project(Project(name="legacy", training_config={"epochs": 1}))
    repo.add_dataset(Dataset(project_id=project.id, gcs_url=url, name="legacy"))
    runner = JobRunner(service, lambda: container, owner="serve@test")
    with TestClient(create_app(container, runner, manage_runner=False)) as client:
        r = client.post("/agents/training/start", json={"project_id": project.id})
        assert r.status_code == 422, r.text
        assert what in r.json()["detail"] and TOKEN not in r.text
        assert service.status(project.id).job is None  # nothing queued

        # `watch` claims pending projects without a start: the job fails, saying why
        job = service.claim_next_pending("watch@test")
        assert job is not None and job.project_id == project.id
        job = service.run(job.id)
        assert job.state is JobState.FAILED and what in (job.error or "")
        assert repo.get_project(project.id).status is ProjectStatus.TRAINING_FAILED

        r = client.get(f"/agents/training/status/{project.id}")
        assert r.status_code == 200 and r.json()["job"]["state"] == "failed"
        status_text = r.text

    [message] = chat.wait_for(1)
    assert message["event"] == "training_failed" and what in message["cause"]
    shown = {
        "job error": job.error or "",
        "agent_logs": json.dumps([[e.message, e.details]
                                  for e in repo.recent_logs(project.id, 100)]),
        "status response": status_text,
        "webhook body": json.dumps(message),
    }
    for where, text in shown.items():
        assert TOKEN not in text, f"the token leaked into the {where}: {text}"


def test_a_signed_https_storage_url_is_still_accepted(tmp_path):
    container = fake_container(settings_for(tmp_path / "home"))
    signed = f"https://storage.googleapis.com/{BUCKET}/x.zip?X-Goog-Signature={TOKEN}"
    project = container.training_service().create_project("p", signed, {"epochs": 1})
    logs = container.metadata_repo().recent_logs(project.id)
    assert logs and TOKEN not in json.dumps([[e.message, e.details] for e in logs])


def test_a_local_zip_whose_name_has_hash_or_question_mark_is_stored_and_trains(tmp_path):
    container = fake_container(settings_for(tmp_path / "home"))
    service = container.training_service()
    archive = make_dataset_zip(tmp_path / "set #1?.zip", classes=2, size=32,
                               per_class={"train": 2, "val": 1})
    url = service.store_dataset(archive)
    project = service.create_project("p", url, {"epochs": 1, "pretrained": False})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.SUCCEEDED, job.error
