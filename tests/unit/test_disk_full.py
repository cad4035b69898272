"""A full disk (issue 9, item 3), on a real small filesystem (a tmpfs of a few MiB, mounted by the
test; skipped where mounting is not allowed): the job ends `failed` saying "no space left on
device", its failure is recorded even when the metadata store sits on the same full disk, and a
checkpoint that does not fit is refused by name, not as torch's "unexpected pos"."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.domain.errors import DiskFull
from training_agent.domain.models import JobState, ProjectStatus
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import make_dataset_zip

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """small_disk(mib) -> a folder on a tmpfs of that many MiB."""
    mounted: list[Path] = []

    def mount(mib: int) -> Path:
        where = tmp_path / f"small-{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write until the disk is full (the OS raises ENOSPC)."""
    with open(path, "ab") as f:
        while True:
            f.write(b"\0" * MiB)
            f.flush()


class DiskFillingTrainer(FakeTrainer):
    """Trains until its writes fill the disk, as a big checkpoint or cache would."""

    def train(self, request, progress):  # type: ignore[no-untyped-def]
        fill(request.work_dir / "checkpoint.bin")


def setup(home: Path, tmp_path: Path, trainer=None, **service_options):  # type: ignore[no-untyped-def]
    archive = make_dataset_zip(tmp_path / "d.zip", classes=2, per_class={"train": 3})
    repo = SqliteMetadataRepo(str(home / "agent.sqlite3"))
    service = TrainingService(
        repo=repo, blobs=LocalBlobStore(), trainer=trainer or DiskFillingTrainer(),
        notifier=InMemoryNotifier(), model_store_url=(home / "store").as_uri(),
        work_root=home / "work", **service_options)
    project = service.create_project("p", archive.as_uri(), {"epochs": 1})
    return repo, service, project


def assert_failed_for_a_full_disk(repo, service, project, job) -> None:  # type: ignore[no-untyped-def]
    assert job.state is JobState.FAILED, job
    assert job.error.startswith("DiskFull: no space left on device"), job.error
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_FAILED
    [error] = [e for e in repo.recent_logs(project.id) if e.level == "error"]
    assert "no space left on device" in error.message and error.details["error_type"] == "DiskFull"
    assert not any((service.work_root / "jobs").iterdir())
    service.start(project.id)  # not "already has an active job"


def test_a_job_that_fills_the_disk_ends_failed_saying_so(small_disk, tmp_path):
    home = small_disk(12)
    repo, service, project = setup(home, tmp_path)
    job = service.run(service.start(project.id).id)
    assert_failed_for_a_full_disk(repo, service, project, job)


def test_the_failure_is_recorded_once_the_disk_has_room_again(small_disk, tmp_path):
    home = small_disk(12)
    repo, service, project = setup(home, tmp_path, record_retry_seconds=30)
    job = service.start(project.id)
    ballast = home / "someone-elses-file.bin"

    class FillsFromOutside(FakeTrainer):  # another process fills the disk, then frees it
        def train(self, request, progress):  # type: ignore[no-untyped-def]
            fill(ballast)

    service.trainer = FillsFromOutside()
    threading.Timer(1.5, ballast.unlink).start()
    t0 = time.monotonic()
    job = service.run(job.id)
    assert time.monotonic() - t0 >= 1.0, "recorded before the disk had room: nothing retried"
    assert_failed_for_a_full_disk(repo, service, project, job)


def test_a_checkpoint_that_does_not_fit_is_refused_before_writing(small_disk):
    import torch

    from training_agent.adapters.trainers import checkpoints

    folder = small_disk(2) / "checkpoints"
    with pytest.raises(DiskFull, match=r"no space left on device: saving the checkpoint needs"):
        checkpoints.save(folder, {"model": torch.zeros(MiB)})  # 4 MiB on a 2 MiB disk
    assert list(folder.iterdir()) == []


def test_torchs_short_write_is_named_as_a_full_disk(small_disk, monkeypatch):
    import torch

    from training_agent.adapters.trainers import checkpoints

    # the disk filled up between the check and the write (another process wrote meanwhile)
    monkeypatch.setattr(checkpoints, "check_free_space", lambda *a, **k: None)
    folder = small_disk(2) / "checkpoints"
    with pytest.raises(DiskFull) as err:
        checkpoints.save(folder, {"model": torch.zeros(MiB)})
    assert str(err.value).startswith("no space left on device: saving the checkpoint in ")
    assert "unexpected pos" in str(err.value) or "No space left" in str(err.value)
    assert list(folder.iterdir()) == []  # no half-written temporary file


def test_sqlites_disk_io_error_on_a_full_disk_is_named_as_a_full_disk(small_disk):
    # each call opens its own connection, so between calls SQLite has deleted its WAL index
    # (-shm); on a full disk it cannot create it again and says only "disk I/O error"
    # (SQLITE_IOERR_SHMSIZE), for reads as well as writes
    from training_agent.domain.disk import is_disk_full
    from training_agent.domain.errors import MetadataError
    from training_agent.domain.models import LogEntry, Project

    home = small_disk(4)
    repo = SqliteMetadataRepo(str(home / "agent.sqlite3"))
    project = repo.add_project(Project(name="p"))
    with contextlib.suppress(OSError):
        fill(home / "someone-elses-file.bin")
    with pytest.raises(MetadataError) as err:
        repo.add_log(LogEntry(project_id=project.id, level="info", message="x"))
    assert "disk I/O error (no space left on device: " in str(err.value), err.value
    assert is_disk_full(err.value)


def test_a_progress_save_refused_by_a_full_disk_fails_the_job_saying_so(small_disk, tmp_path):
    # the bench's full disk (bench/faults.py disk_full): another process fills the disk while
    # the job trains, and the first write to meet it is the progress save into SQLite
    home = small_disk(12)
    repo, service, project = setup(home, tmp_path, record_retry_seconds=30)
    ballast = home / "someone-elses-file.bin"

    class FillsThenReports(FakeTrainer):
        def train(self, request, progress):  # type: ignore[no-untyped-def]
            with contextlib.suppress(OSError):
                fill(ballast)
            return super().train(request, progress)

    service.trainer = FillsThenReports()
    threading.Timer(1.5, ballast.unlink).start()  # room again: the failure can be recorded
    job = service.run(service.start(project.id).id)
    assert_failed_for_a_full_disk(repo, service, project, job)
