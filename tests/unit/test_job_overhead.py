"""Job overhead (issue 10, item 4): the libraries load while the dataset comes, and the steps
outside decode and training are timed in the request the trainer gets (the manifest's
`timings`)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.clock import Tally, process_age, start_timings
from training_agent.adapters.trainers.lazy import LazyTrainer
from training_agent.domain.service import TrainingService

DATASET_URL = "mem://datasets/shapes.zip"


class Warming(FakeTrainer):
    """Records when and on which thread it was warmed up, and the blob store's calls."""

    def __init__(self, blobs: InMemoryBlobStore) -> None:
        super().__init__()
        self.blobs = blobs
        self.warmed: list[tuple[str, int]] = []

    def warm_up(self) -> None:
        self.warmed.append((threading.current_thread().name, len(self.blobs.downloads)))


class CountingBlobs(InMemoryBlobStore):
    def __init__(self) -> None:
        super().__init__()
        self.downloads: list[str] = []

    def download(self, url, dest):  # type: ignore[no-untyped-def]
        self.downloads.append(url)
        return super().download(url, dest)


@pytest.fixture
def blobs(dataset_zip):
    store = CountingBlobs()
    store.put(DATASET_URL, dataset_zip.read_bytes())
    return store


def test_the_job_warms_the_trainer_before_the_download_and_times_its_steps(blobs, tmp_path):
    trainer = Warming(blobs)
    service = TrainingService(repo=InMemoryMetadataRepo(), blobs=blobs, trainer=trainer,
                              notifier=InMemoryNotifier(), model_store_url="mem://models",
                              work_root=tmp_path / "home")
    project = service.create_project("p", DATASET_URL, {"epochs": 1})
    service.run(service.start(project.id).id)
    assert trainer.warmed == [("MainThread", 0)]  # called once, before the download
    [request] = trainer.requests
    assert set(request.timings) == {"download_seconds", "hash_seconds", "index_seconds"}
    assert all(v >= 0 for v in request.timings.values())


def test_lazy_trainer_builds_in_the_background_and_train_waits_for_it():
    built_on: list[str] = []
    release = threading.Event()
    real = FakeTrainer()

    def factory():
        built_on.append(threading.current_thread().name)
        release.wait(5)
        return real

    lazy = LazyTrainer(factory)
    lazy.warm_up()
    lazy.warm_up()  # once
    time.sleep(0.05)
    assert built_on == ["trainer-warm-up"]  # building, off the caller's thread
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    assert lazy.real is real
    assert time.monotonic() - t0 >= 0.1  # waited for the build in progress, built it once
    assert built_on == ["trainer-warm-up"]


def test_lazy_trainer_records_the_wait_in_the_request(tmp_path, dataset_zip):
    from training_agent.domain.archive import open_dataset
    from training_agent.domain.config import TrainingConfig
    from training_agent.domain.ports import TrainRequest

    real = FakeTrainer()
    lazy = LazyTrainer(lambda: real)
    splits = open_dataset(dataset_zip, tmp_path / "d", 0.15, 0)
    request = TrainRequest(
        job_id="j", project_id="p", project_name="p", config=TrainingConfig(epochs=1),
        splits=splits, work_dir=tmp_path, checkpoint_dir=tmp_path / "c", out_dir=tmp_path / "o",
        dataset_url="mem://x", dataset_sha256="0" * 64, timings={"download_seconds": 1.5})
    lazy.train(request, lambda p: None)
    [seen] = real.requests
    assert seen.timings["download_seconds"] == 1.5
    assert seen.timings["trainer_load_wait_seconds"] >= 0


def test_a_failing_warm_up_surfaces_when_training_starts():
    def factory():
        raise RuntimeError("no torch here")

    lazy = LazyTrainer(factory)
    lazy.warm_up()
    with pytest.raises(RuntimeError, match="no torch here"):
        lazy.real  # noqa: B018


def test_start_timings_add_the_process_age():
    age = process_age()
    assert age is not None and 0 <= age < 24 * 3600
    timings = start_timings({"download_seconds": 0.5})
    assert timings["download_seconds"] == 0.5
    assert timings["process_start_to_trainer_seconds"] >= age - 0.01


def test_a_tally_adds_each_parts_seconds_and_names_the_rest():
    tally = Tally()
    for _ in range(2):
        with tally("steps_seconds"):
            time.sleep(0.02)
    with pytest.raises(ValueError), tally("validation_seconds"):  # timed however it ends
        time.sleep(0.01)
        raise ValueError
    parts = tally.split(0.1, "epoch_end_seconds")
    assert 0.04 <= parts["steps_seconds"] < 0.09 and 0.01 <= parts["validation_seconds"] < 0.05
    assert parts["epoch_end_seconds"] == pytest.approx(
        0.1 - parts["steps_seconds"] - parts["validation_seconds"], abs=0.002)
    assert tally.split(0.01, "rest")["rest"] == 0.0  # never negative
