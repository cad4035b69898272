"""TrainingService against the in-memory adapters: the seed's workflow, success and every failure."""

from __future__ import annotations

import io
import stat
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.fakes import ExplodingTrainer, FakeTrainer
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.archive import IntakeLimits
from training_agent.domain.errors import (
    BlobNotFound,
    Conflict,
    DatasetNotFound,
    InvalidConfig,
    InvalidInput,
    MetadataError,
    ProjectNotFound,
    StorageError,
    StoragePermissionDenied,
)
from training_agent.domain.models import Dataset, JobState, Project, ProjectStatus
from training_agent.domain.service import TrainingService

DATASET_URL = "mem://datasets/shapes.zip"
STORE = "mem://models"


@pytest.fixture
def repo() -> InMemoryMetadataRepo:
    return InMemoryMetadataRepo()


@pytest.fixture
def blobs(dataset_zip: Path) -> InMemoryBlobStore:
    store = InMemoryBlobStore()
    store.put(DATASET_URL, dataset_zip.read_bytes())
    return store


@pytest.fixture
def notifier() -> InMemoryNotifier:
    return InMemoryNotifier()


def make_service(repo, blobs, notifier, tmp_path, trainer=None) -> TrainingService:
    return TrainingService(repo=repo, blobs=blobs, trainer=trainer or FakeTrainer(),
                           notifier=notifier, model_store_url=STORE, work_root=tmp_path / "home")


@pytest.fixture
def service(repo, blobs, notifier, tmp_path) -> TrainingService:
    return make_service(repo, blobs, notifier, tmp_path)


def errors_of(repo: InMemoryMetadataRepo, project_id: str) -> list:
    return [e for e in repo.logs if e.project_id == project_id and e.level == "error"]


def test_success_follows_the_seed_workflow(service, repo, blobs, notifier, tmp_path):
    project = service.create_project("cats", DATASET_URL, {"epochs": 3, "pretrained": False})
    job = service.start(project.id)
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING

    done = service.run(job.id)

    assert done.state is JobState.SUCCEEDED and done.error is None
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    prefix = f"{STORE}/models/{project.id}/{job.id}/"
    assert {u for u in blobs.blobs if u.startswith(prefix)} == {prefix + "model.pth",
                                                                prefix + "manifest.json"}
    [model] = repo.list_models(project.id)
    assert model.name == "cats_model" and model.framework == "pytorch"
    assert model.url == prefix + "model.pth" and model.accuracy == 0.75
    assert model.metadata["job_id"] == job.id and model.metadata["epochs"] == 3
    assert model.metadata["manifest_url"] == prefix + "manifest.json"
    messages = [e.message for e in repo.logs if e.project_id == project.id]
    assert [m for m in messages if m.startswith("epoch")] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert messages.index("dataset downloaded") < messages.index("dataset prepared") \
        < messages.index("artifacts uploaded") < messages.index(
            "training complete; status pending_evaluation")
    [note] = notifier.sent
    assert note.ok and note.details["model_url"] == prefix + "model.pth"
    assert not (tmp_path / "home" / "jobs" / job.id).exists(), "work folder left behind"
    status = service.status(project.id)
    assert status.job.model_url == prefix + "model.pth"
    assert status.job.progress.epoch == 3 and status.job.progress.val_accuracy == 0.75
    assert status.recent_logs[0].message == "training complete; status pending_evaluation"
    assert repo.latest_dataset(project.id).num_classes == 3  # what intake found


def test_training_request_gets_splits_and_resolved_config(repo, blobs, notifier, tmp_path):
    trainer = FakeTrainer()
    service = make_service(repo, blobs, notifier, tmp_path, trainer)
    project = service.create_project("p", DATASET_URL, {"epochs": 1, "lr": 0.01})
    service.run(service.start(project.id, {"batch_size": 8}).id)
    [request] = trainer.requests
    assert request.config.lr == 0.01 and request.config.batch_size == 8
    assert request.splits.class_names == ["class_a", "class_b", "class_c"]
    assert request.splits.counts() == {"train": 36, "val": 12, "test": 12}
    assert len(request.dataset_sha256) == 64


def assert_failed_at(service, repo, notifier, project_id, job_id, step, cause_part):
    job = repo.get_job(job_id)
    assert job.state is JobState.FAILED
    assert cause_part in job.error
    assert repo.get_project(project_id).status is ProjectStatus.TRAINING_FAILED
    assert repo.list_models(project_id) == []
    [err] = errors_of(repo, project_id)
    assert err.details["step"] == step and cause_part in err.message
    assert notifier.sent[-1].ok is False and notifier.sent[-1].details["step"] == step
    assert not (service.work_root / "jobs" / job_id).exists()


@pytest.mark.parametrize("error, cause", [
    (BlobNotFound("no blob at mem://datasets/shapes.zip"), "no blob"),
    (StoragePermissionDenied("permission denied reading gs://b/k"), "permission denied"),
])
def test_download_failure(service, repo, blobs, notifier, error, cause):
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    blobs.fail_on["download"] = error
    service.run(job.id)
    assert_failed_at(service, repo, notifier, project.id, job.id, "downloading", cause)


def test_bad_archive_fails_at_preparing(service, repo, blobs, notifier):
    blobs.put("mem://datasets/bad.zip", b"this is not a zip file")
    project = service.create_project("p", "mem://datasets/bad.zip", {"epochs": 1})
    job = service.start(project.id)
    service.run(job.id)
    assert_failed_at(service, repo, notifier, project.id, job.id, "preparing", "not a readable zip")


def test_training_error(repo, blobs, notifier, tmp_path):
    service = make_service(repo, blobs, notifier, tmp_path, ExplodingTrainer())
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    service.run(job.id)
    assert_failed_at(service, repo, notifier, project.id, job.id, "training", "loss became NaN")


def test_upload_error(service, repo, blobs, notifier):
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    blobs.fail_on["upload"] = StorageError("bucket unreachable")
    service.run(job.id)
    assert_failed_at(service, repo, notifier, project.id, job.id, "uploading", "bucket unreachable")


def test_record_error(service, repo, notifier):
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    repo.fail_on["record_model"] = MetadataError("models insert refused")
    service.run(job.id)
    assert_failed_at(service, repo, notifier, project.id, job.id, "recording", "models insert refused")


def test_unknown_project_is_not_found(service):
    with pytest.raises(ProjectNotFound):
        service.start("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ProjectNotFound):
        service.status("00000000-0000-4000-8000-000000000000")


def test_malformed_project_id_is_invalid_input(service):
    with pytest.raises(InvalidInput, match="not a UUID"):
        service.start("42")


def test_project_without_dataset(service, repo):
    project = repo.add_project(Project(name="empty"))
    with pytest.raises(DatasetNotFound):
        service.start(project.id)


@pytest.mark.parametrize("status", [ProjectStatus.PENDING_EVALUATION, ProjectStatus.TRAINING])
def test_status_that_may_not_start_is_a_conflict(service, repo, status):
    project = service.create_project("p", DATASET_URL)
    repo.set_project_status(project.id, status)
    with pytest.raises(Conflict, match=status.value):
        service.start(project.id)
    assert repo.latest_job(project.id) is None


def test_force_restarts_a_finished_project_but_never_beside_an_active_job(service, repo):
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    service.run(service.start(project.id).id)
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    job = service.start(project.id, force=True)
    with pytest.raises(Conflict, match="active job"):
        service.start(project.id, force=True)
    assert service.run(job.id).state is JobState.SUCCEEDED
    assert len(repo.list_models(project.id)) == 2


@pytest.mark.parametrize("config, named", [
    ({"epochs": 0}, "epochs"), ({"colour": "red"}, "colour: unknown key"),
    ({"image_size": 5}, "image_size"), ({"optimizer": "lion"}, "optimizer"),
    ({"backbone": "no-such-backbone"}, "no-such-backbone"),
])
def test_invalid_config_is_refused_by_name_before_a_job_exists(service, repo, config, named):
    project = service.create_project("p", DATASET_URL)
    with pytest.raises(InvalidConfig, match=named):
        service.start(project.id, config)
    assert repo.latest_job(project.id) is None
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_TRAINING


@pytest.mark.parametrize("name, said", [
    ("", "project name is empty"), ("  ", "project name is empty"),
    ("a" * 201, "201 characters long, more than the limit of 200"),
    ("cats\x1b[2J", "control character U\\+001B"), ("x\u202edog", "U\\+202E"),
])
def test_a_bad_project_name_is_refused_and_nothing_is_written(service, repo, blobs, dataset_zip,
                                                             name, said):
    with pytest.raises(InvalidInput, match=said):
        service.create_project(name, DATASET_URL)
    stored = set(blobs.blobs)
    with pytest.raises(InvalidInput, match=said):
        service.create_project_from_file(name, dataset_zip)
    assert repo.list_projects(10) == [] and set(blobs.blobs) == stored  # no copy left
    assert service.create_project("Cats & dogs ✓ " + "a" * 186, DATASET_URL).name.endswith("a")


def test_cancel_stops_a_running_job(repo, blobs, notifier, tmp_path):
    service = make_service(repo, blobs, notifier, tmp_path)
    project = service.create_project("p", DATASET_URL, {"epochs": 5})
    job = service.start(project.id)
    cancelled = []

    def cancel_after_first_epoch(j):
        if j.progress.get("epoch") == 1 and not cancelled:
            cancelled.append(service.cancel(project.id))

    done = service.run(job.id, on_progress=cancel_after_first_epoch)
    assert done.state is JobState.CANCELLED
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_CANCELLED
    assert repo.list_models(project.id) == []
    assert done.progress["epoch"] == 1, "training went on after the cancel"
    with pytest.raises(Conflict):
        service.cancel(project.id)
    assert service.start(project.id).state is JobState.QUEUED  # cancelled may start again


def test_notifier_failure_never_fails_the_job(service, repo, notifier):
    def broken(_):
        raise ConnectionError("chat is down")

    notifier.notify = broken  # type: ignore[method-assign]
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    assert service.run(service.start(project.id).id).state is JobState.SUCCEEDED
    assert any("notification failed" in e.message for e in repo.logs if e.level == "warning")


def test_stale_job_is_failed(service, repo):
    from datetime import timedelta

    project = service.create_project("p", DATASET_URL)
    job = service.start(project.id)
    [failed] = service.fail_stale(timedelta(seconds=-1))
    assert failed.id == job.id and failed.state is JobState.FAILED
    assert "heartbeat stale" in failed.error
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_FAILED


def test_signed_dataset_urls_are_never_logged(service, repo, blobs, dataset_zip):
    url = "mem://datasets/shapes.zip?X-Goog-Signature=secret-token"
    blobs.put(url, dataset_zip.read_bytes())
    project = service.create_project("p", url, {"epochs": 1})
    service.run(service.start(project.id).id)
    assert not any("secret-token" in (e.message + str(e.details)) for e in repo.logs)


# ---- a cancel between the claim and the first step -------------------------------------------
def test_a_cancel_right_after_the_download_step_starts_is_not_overwritten(
        repo, blobs, notifier, tmp_path):
    """The claim sets `training`; the run must not set it again, or a cancel that lands between
    the first step and that write leaves the project `training` for ever."""
    service = make_service(repo, blobs, notifier, tmp_path)
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    save_job = repo.save_job

    def save_then_cancel(j):
        saved = save_job(j)
        if j.state is JobState.DOWNLOADING:
            service.cancel(project.id)  # another agent's cancel, just after this save
        return saved

    repo.save_job = save_then_cancel  # type: ignore[method-assign]
    done = service.run(job.id)
    assert done.state is JobState.CANCELLED
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_CANCELLED
    assert repo.list_models(project.id) == []


# ---- watch: jobs claimed from the store get the config `start` would have given them --------
def test_a_claimed_job_stores_the_resolved_config(service, repo):
    project = service.create_project("p", DATASET_URL, {"epochs": 2, "pretrained": False})
    job = service.claim_next_pending("watch@test")
    assert job is not None and job.project_id == project.id
    stored = repo.get_job(job.id)
    assert stored.config == job.config
    assert stored.config["epochs"] == 2 and stored.config["backbone"] == "resnet18"
    assert stored.config["batch_size"] == "auto"  # the defaults are filled in, as `start` does
    assert service.run(job.id).state is JobState.SUCCEEDED


@pytest.mark.parametrize("raw, named", [
    ({"colour": "red"}, "colour: unknown key"),
    ({"epochs": 0}, "epochs"),
    ({"backbone": "no-such-backbone"}, "no-such-backbone"),  # the trainer's check
])
def test_a_claimed_project_with_a_bad_config_fails_by_name_and_the_next_is_claimed(
        service, repo, notifier, raw, named):
    # rows written straight into the store (a Supabase dashboard) are not validated on the way in
    bad = repo.add_project(Project(name="bad", training_config=raw))
    repo.add_dataset(Dataset(project_id=bad.id, gcs_url=DATASET_URL))
    good = service.create_project("good", DATASET_URL, {"epochs": 1})

    job = service.claim_next_pending("watch@test")

    assert job is not None and job.project_id == good.id
    [failed] = [j for j in repo.jobs.values() if j.project_id == bad.id]
    assert failed.state is JobState.FAILED and named in failed.error
    assert failed.error.startswith("InvalidConfig: invalid training config") or \
        "unknown backbone" in failed.error
    assert "validation error" not in failed.error  # pydantic's multi-line text
    [err] = errors_of(repo, bad.id)
    assert err.details["step"] == "queued" and named in err.message
    assert repo.get_project(bad.id).status is ProjectStatus.TRAINING_FAILED
    assert notifier.sent[-1].ok is False and notifier.sent[-1].project_id == bad.id
    assert service.claim_next_pending("watch@test") is None


def test_a_bad_stored_job_config_fails_naming_the_key(service, repo):
    project = service.create_project("p", DATASET_URL)
    job = service.start(project.id)
    stored = repo.get_job(job.id)
    stored.config = {**stored.config, "colour": "red"}
    repo.save_job(stored)
    done = service.run(job.id)
    assert done.state is JobState.FAILED and "colour: unknown key" in done.error


# ---- hostile archives through the whole service ----------------------------------------------
def hostile_zip(base: Path, kind: str) -> tuple[bytes, str]:
    """The valid dataset plus one hostile member; returns the zip's bytes and the member."""
    buf = io.BytesIO()
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        if kind == "dotdot":
            member = "dataset/train/class_a/../../../../../evil.png"
            out.writestr(member, b"evil")
        elif kind == "absolute":
            member = f"{tempfile.gettempdir()}/training-agent-evil-{uuid.uuid4().hex}.png"
            out.writestr(member, b"evil")
        elif kind == "symlink":
            member = "dataset/train/class_a/link.png"
            info = zipfile.ZipInfo(member)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            out.writestr(info, "/etc/passwd")
        else:  # 8 MiB of zeros: a few KiB compressed, over the 1 MiB limit given to the service
            member = "dataset/train/class_a/bomb.png"
            out.writestr(member, b"\0" * (8 << 20), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue(), member


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("kind, words", [
    ("dotdot", "escapes"), ("absolute", "absolute"), ("symlink", "symbolic link"),
    ("bomb", "limit of 1048576"),
])
def test_a_hostile_archive_fails_the_job_at_preparing_naming_the_member(
        repo, notifier, tmp_path, dataset_zip, kind, words):
    data, member = hostile_zip(dataset_zip, kind)
    assert len(data) < dataset_zip.stat().st_size + 100_000
    blobs = InMemoryBlobStore()
    blobs.put(DATASET_URL, data)
    service = TrainingService(repo=repo, blobs=blobs, trainer=FakeTrainer(), notifier=notifier,
                              model_store_url=STORE, work_root=tmp_path / "home",
                              limits=IntakeLimits(max_total_bytes=1 << 20))
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    job = service.start(project.id)
    before = files_under(tmp_path)

    service.run(job.id)

    assert_failed_at(service, repo, notifier, project.id, job.id, "preparing", words)
    [err] = errors_of(repo, project.id)
    assert repr(member) in err.message and repr(member) in repo.get_job(job.id).error
    assert files_under(tmp_path) == before, "something was written outside the work folder"
    if kind == "absolute":
        assert not Path(member).exists()
