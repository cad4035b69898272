"""Blob-store details that need no server: the router's refusal and the local store's cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.blobstore.router import BlobStoreRouter
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.errors import StorageError
from training_agent.domain.models import JobState, ProjectStatus
from training_agent.domain.service import TrainingService

SECRET_URL = "https://alice:s3cret-pass@files.example.com/data/set.zip?token=t0ken"


def router() -> BlobStoreRouter:
    return BlobStoreRouter({"file": LocalBlobStore, "mem": InMemoryBlobStore})


def test_unsupported_scheme_error_never_shows_credentials(tmp_path):
    with pytest.raises(StorageError) as err:
        router().download(SECRET_URL, tmp_path / "d.zip")
    message = str(err.value)
    assert "https://files.example.com/data/set.zip" in message and "file://" in message
    for secret in ("alice", "s3cret-pass", "t0ken"):
        assert secret not in message


def test_unsupported_scheme_credentials_reach_no_job_log_or_status(tmp_path):
    repo, notifier = InMemoryMetadataRepo(), InMemoryNotifier()
    service = TrainingService(repo=repo, blobs=router(), trainer=FakeTrainer(),
                              notifier=notifier, model_store_url="mem://models",
                              work_root=tmp_path / "home")
    project = service.create_project("p", SECRET_URL, {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.FAILED and "unsupported storage URL" in job.error
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_FAILED
    shown = [job.error, service.status(project.id).model_dump_json(),
             *(e.message + str(e.details) for e in repo.logs),
             *(n.message + str(n.details) for n in notifier.sent)]
    for secret in ("alice", "s3cret-pass", "t0ken"):
        assert not any(secret in text for text in shown), secret


def test_local_upload_that_fails_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "store" / "models" / "model.pth"
    src = tmp_path / "model.pth"
    src.write_bytes(b"x" * 1024)

    def broken_copy(a, b):  # type: ignore[no-untyped-def]
        Path(b).write_bytes(b"half")  # what a disk filling up mid-copy leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("training_agent.adapters.blobstore.local.shutil.copyfile", broken_copy)
    with pytest.raises(StorageError, match="No space left"):
        LocalBlobStore().upload(src, target.as_uri())
    assert list(target.parent.iterdir()) == []
