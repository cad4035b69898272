"""A model trained and uploaded is not thrown away because the metadata store is away when it
is recorded: the worker retries the recording step and record_model, with backoff, while the
store cannot be reached (an outage; not a refusal), for up to `record_retry_seconds`, keeping
the uploaded artifacts; a retry whose first try landed before its answer was lost does not
record the model twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.errors import MetadataError
from training_agent.domain.models import JobState, ModelRecord, ProjectStatus, TrainingJob
from training_agent.domain.service import TrainingService

DATASET_URL = "mem://datasets/shapes.zip"


def outage() -> MetadataError:
    return MetadataError("postgres 127.0.0.1:5999/postgres is unreachable: couldn't get a "
                         "connection after 5.00 sec", unreachable=True)


def service_with(repo, blobs, tmp_path: Path, dataset_zip, retry: float = 30):  # type: ignore[no-untyped-def]
    blobs.put(DATASET_URL, dataset_zip.read_bytes())
    notifier = InMemoryNotifier()
    service = TrainingService(repo=repo, blobs=blobs, trainer=FakeTrainer(), notifier=notifier,
                              model_store_url="mem://store", work_root=tmp_path / "work",
                              record_retry_seconds=retry)
    return service, notifier


def models_in(blobs: InMemoryBlobStore) -> list[str]:
    return sorted(u for u in blobs.blobs if u.startswith("mem://store/models/"))


def assert_recorded(repo, blobs, notifier, project_id: str, job: TrainingJob) -> None:  # type: ignore[no-untyped-def]
    assert job.state is JobState.SUCCEEDED, job.error
    [model] = repo.list_models(project_id)
    assert model.metadata["job_id"] == job.id
    assert repo.get_project(project_id).status is ProjectStatus.PENDING_EVALUATION
    assert len(models_in(blobs)) == 2, "the uploaded artifacts were not kept"
    assert model.url in blobs.blobs
    assert [n.ok for n in notifier.sent] == [True]
    assert not [e for e in repo.recent_logs(project_id) if e.level == "error"]


def test_the_model_is_recorded_once_the_store_is_back(tmp_path, dataset_zip):
    repo, blobs = InMemoryMetadataRepo(), InMemoryBlobStore()
    service, notifier = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    repo.fail_on["record_model"] = outage()
    threading.Timer(1.0, repo.fail_on.pop, ("record_model",)).start()
    t0 = time.monotonic()
    job = service.run(job.id)
    assert time.monotonic() - t0 >= 0.9
    assert_recorded(repo, blobs, notifier, project.id, job)


class StoreGoesAwayAfterUploads(InMemoryBlobStore):
    """The metadata store goes away as the last artifact is uploaded, back `away` s later."""

    def __init__(self, repo: InMemoryMetadataRepo, away: float) -> None:
        super().__init__()
        self.repo, self.away = repo, away

    def upload(self, src: Path, url: str) -> str:
        done = super().upload(src, url)
        if url.endswith("/model.pth"):  # the last one (uploads go in name order)
            for call in ("save_job", "record_model"):
                self.repo.fail_on[call] = outage()
            threading.Timer(self.away, self.repo.fail_on.clear).start()
        return done


def test_the_recording_step_waits_for_the_store_too(tmp_path, dataset_zip):
    repo = InMemoryMetadataRepo()
    blobs = StoreGoesAwayAfterUploads(repo, away=1.0)
    service, notifier = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert_recorded(repo, blobs, notifier, project.id, job)


def test_a_store_away_longer_than_the_retries_fails_the_job_and_removes_the_uploads(
        tmp_path, dataset_zip):
    repo, blobs = InMemoryMetadataRepo(), InMemoryBlobStore()
    service, notifier = service_with(repo, blobs, tmp_path, dataset_zip, retry=1.0)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    repo.fail_on["record_model"] = outage()
    t0 = time.monotonic()
    job = service.run(service.start(project.id).id)
    assert 0.5 <= time.monotonic() - t0 < 10
    assert job.state is JobState.FAILED and "is unreachable" in (job.error or "")
    assert repo.list_models(project.id) == [] and models_in(blobs) == []
    assert [n.ok for n in notifier.sent] == [False]


def test_a_refusal_is_not_retried(tmp_path, dataset_zip):
    repo, blobs = InMemoryMetadataRepo(), InMemoryBlobStore()
    service, _ = service_with(repo, blobs, tmp_path, dataset_zip, retry=300)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    repo.fail_on["record_model"] = MetadataError("models insert refused")
    t0 = time.monotonic()
    job = service.run(service.start(project.id).id)
    assert time.monotonic() - t0 < 5
    assert job.state is JobState.FAILED and "models insert refused" in (job.error or "")


class LostReply(InMemoryMetadataRepo):
    """record_model's first call lands, then its answer is lost with the connection."""

    lost = False

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        super().record_model(model, job)
        if not self.lost:
            self.lost = True
            raise outage()


def test_a_retry_after_a_lost_reply_records_the_model_once(tmp_path, dataset_zip):
    repo, blobs = LostReply(), InMemoryBlobStore()
    service, notifier = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert_recorded(repo, blobs, notifier, project.id, job)
    [done] = [e for e in repo.recent_logs(project.id) if e.message.startswith(
        "training complete")]
    assert done.details["job_id"] == job.id
