"""Nothing is left behind by a job or a create that failed (issue 9, item 7): the work folder of
a dead worker, the artifacts uploaded before a later failure, the zip of a refused create."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.errors import InvalidInput, MetadataError, StorageError
from training_agent.domain.models import JobState, utcnow
from training_agent.domain.service import TrainingService

DATASET_URL = "mem://datasets/shapes.zip"


class FlakyUploads(InMemoryBlobStore):
    """Uploads succeed `good` times, then fail (a store that went away mid-way)."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def upload(self, src: Path, url: str) -> str:
        if self.good == 0:
            raise StorageError("bucket unreachable")
        self.good -= 1
        return super().upload(src, url)


@pytest.fixture
def repo() -> InMemoryMetadataRepo:
    return InMemoryMetadataRepo()


def service_with(repo, blobs, tmp_path, dataset_zip) -> TrainingService:  # type: ignore[no-untyped-def]
    blobs.put(DATASET_URL, dataset_zip.read_bytes())
    return TrainingService(repo=repo, blobs=blobs, trainer=FakeTrainer(),
                           notifier=InMemoryNotifier(), model_store_url="mem://store",
                           work_root=tmp_path / "home" / "work")


def models_in(blobs: InMemoryBlobStore) -> list[str]:
    return sorted(u for u in blobs.blobs if u.startswith("mem://store/models/"))


def test_artifacts_uploaded_before_a_recording_failure_are_removed(repo, tmp_path, dataset_zip):
    blobs = InMemoryBlobStore()
    service = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    repo.fail_on["record_model"] = MetadataError("models insert refused")
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.FAILED and "models insert refused" in (job.error or "")
    assert models_in(blobs) == [], "the failed job's artifacts were left in the store"
    [note] = [e for e in repo.recent_logs(project.id) if "before the job failed" in e.message]
    assert note.message == "removed 2 artifacts uploaded before the job failed"


def test_artifacts_uploaded_before_an_upload_failure_are_removed(repo, tmp_path, dataset_zip):
    blobs = FlakyUploads(good=1)
    service = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.FAILED and "bucket unreachable" in (job.error or "")
    assert models_in(blobs) == []


def test_artifacts_that_cannot_be_removed_are_listed_for_removal(repo, tmp_path, dataset_zip):
    blobs = InMemoryBlobStore()
    service = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    repo.fail_on["record_model"] = MetadataError("models insert refused")
    blobs.fail_on["delete"] = StorageError("delete refused")
    job = service.run(service.start(project.id).id)
    left = models_in(blobs)
    assert len(left) == 2
    [note] = [e for e in repo.recent_logs(project.id) if "before the job failed" in e.message]
    assert note.level == "warning" and "remove them by hand" in note.message
    assert sorted(note.details["artifacts"]) == left and note.details["job_id"] == job.id


def test_a_successful_job_keeps_its_artifacts(repo, tmp_path, dataset_zip):
    blobs = InMemoryBlobStore()
    service = service_with(repo, blobs, tmp_path, dataset_zip)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.run(service.start(project.id).id)
    assert job.state is JobState.SUCCEEDED and len(models_in(blobs)) == 2


def test_the_stale_sweep_removes_the_work_folders_of_dead_workers(repo, tmp_path, dataset_zip):
    service = service_with(repo, InMemoryBlobStore(), tmp_path, dataset_zip)
    jobs = service.work_root / "jobs"

    def job_with_folder(name: str, *, stale: bool):  # type: ignore[no-untyped-def]
        job = service.start(service.create_project(name, DATASET_URL, {"epochs": 1}).id)
        job.advance(JobState.DOWNLOADING)
        job.beat()
        if stale:
            job.heartbeat_at = utcnow() - timedelta(minutes=10)  # its worker was SIGKILLed
        assert repo.save_job(job)
        (jobs / job.id / "data" / "train").mkdir(parents=True)
        (jobs / job.id / "data" / "train" / "x.jpg").write_bytes(b"x" * 1000)
        return job

    dead = job_with_folder("dead", stale=True)
    alive = job_with_folder("alive", stale=False)
    finished = job_with_folder("finished", stale=False)
    service.cancel(finished.project_id)  # final, but a killed worker left its folder

    [failed] = service.fail_stale(timedelta(seconds=120))

    assert failed.id == dead.id and failed.state is JobState.FAILED
    assert sorted(p.name for p in jobs.iterdir()) == [alive.id]


def test_a_refused_create_leaves_no_copy_of_the_zip_in_the_store(repo, tmp_path, dataset_zip):
    blobs = InMemoryBlobStore()
    service = service_with(repo, blobs, tmp_path, dataset_zip)
    before = dict(blobs.blobs)
    with pytest.raises(InvalidInput, match="epochs"):
        service.create_project_from_file("p", dataset_zip, {"epochs": -1})

    def refused(dataset):  # type: ignore[no-untyped-def]
        raise MetadataError("datasets insert refused")

    repo.add_dataset = refused  # the store fails after the zip was copied
    with pytest.raises(MetadataError):
        service.create_project_from_file("p", dataset_zip, {"epochs": 1})
    assert blobs.blobs == before, "a refused create left a copy of the zip in the store"
