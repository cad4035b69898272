"""The first epoch trains while the training cache fills (issue 10, item 2; filling.py): on
CUDA by default, here forced with `PyTorchTrainer(overlap=True)`, through the same decoders.
What a user would check: training starts before the decode has ended, the model is the one
the plain decode gives, unreadable images are still skipped and named, a class left with no
image still fails the job, and a job that ends early leaves no decode running. These run on
the CPU (`device: cpu`) everywhere; one runs nvJPEG on CUDA, where there is a GPU."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

from training_agent.adapters.trainers import filling
from training_agent.adapters.trainers.decoding import PilDecoder
from training_agent.adapters.trainers.filling import FillingSplit
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.errors import DatasetInvalid, JobCancelled
from training_agent.testing.datasets import make_dataset_zip

from .conftest import Recorder, splits_of
from .conftest import make_request as any_device_request
from .test_trainer_images import splits_of_folder, write_dataset


@pytest.fixture
def slow_decode(monkeypatch):
    """Pieces of 6 images, each decode call 0.15 s longer: the fill lasts a few steps. The
    end of each call is recorded."""
    ends: list[float] = []
    real = PilDecoder.decode

    def decode(self, sources):
        time.sleep(0.15)
        try:
            return real(self, sources)
        finally:
            ends.append(time.monotonic())

    monkeypatch.setattr(filling, "PIECE", 6)
    monkeypatch.setattr(PilDecoder, "decode", decode)
    return ends


def make_request(*args, **config):  # type: ignore[no-untyped-def]
    return any_device_request(*args, **{"device": "cpu", **config})


def first_step_at(sink: Recorder) -> float:
    return next(t for t, e in sink.timed if e.step == 1)


class TimedRecorder(Recorder):
    def __init__(self, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kw)
        self.timed: list[tuple[float, object]] = []

    def __call__(self, p):  # type: ignore[no-untyped-def]
        self.timed.append((time.monotonic(), p))
        super().__call__(p)


def manifest_of(result) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(result.artifacts["manifest.json"].read_text())


def test_the_first_epoch_trains_while_the_cache_fills_and_learns_the_same(
        tmp_path, tiny_splits, slow_decode):
    request = make_request(tmp_path, tiny_splits, batch_size=4, epochs=2)
    sink = TimedRecorder()
    overlapped = PyTorchTrainer(overlap=True).train(request, sink)
    fill_ended = slow_decode[-1]
    assert first_step_at(sink) < fill_ended  # a step ran before the last piece was decoded
    m = manifest_of(overlapped)
    assert m["input"]["decoder"]["overlapped"] is True
    assert m["input"]["decoder"]["images"] == {"pil": 36 + 12 + 12}  # train, val and test
    assert m["timings"]["decode_seconds"] > 0 and "decode_wait_seconds" in m["timings"]

    plain_request = make_request(tmp_path / "plain", tiny_splits, batch_size=4, epochs=2)
    plain = PyTorchTrainer().train(plain_request, Recorder())  # the default, on a CPU
    assert manifest_of(plain)["input"]["decoder"]["overlapped"] is False
    # the same images in the same order: the same training, step for step
    losses = [h["train_loss"] for h in overlapped.metrics["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in plain.metrics["history"]],
                                   rel=1e-4)
    assert overlapped.accuracy == plain.accuracy


def test_a_batch_waits_only_for_the_pieces_that_hold_its_rows(tmp_path, tiny_splits,
                                                             monkeypatch):
    """The second piece is held back: the first batch (rows of the first piece) is served,
    the second waits until the piece comes."""
    monkeypatch.setattr(filling, "PIECE", 8)
    gate, calls = threading.Event(), []
    real = PilDecoder.decode

    def decode(self, sources):
        calls.append(len(sources))
        if len(calls) == 2:
            gate.wait(10)
        return real(self, sources)

    monkeypatch.setattr(PilDecoder, "decode", decode)
    items = list(tiny_splits.train)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(3))
    split = FillingSplit(items, PilDecoder(32, 1), source_of(tiny_splits), 32, order,
                         torch.device("cpu"), pin=False)
    batches = split.batches([order[:8], order[8:16]])
    images, labels = next(batches)
    assert images.shape == (8, 3, 32, 32) and not gate.is_set()
    assert labels.tolist() == [items[i][1] for i in order[:8].tolist()]
    assert split.done == 8  # the second piece is still being decoded
    threading.Timer(0.2, gate.set).start()
    images, _ = next(batches)
    assert gate.is_set() and images.shape == (8, 3, 32, 32)
    split.settle()
    assert len(split) == len(items) and split.skipped == []
    assert int(split.images.float().mean()) > 0  # every row holds an image


def test_an_unreadable_image_found_while_filling_is_skipped_and_named(tmp_path, slow_decode):
    root = tmp_path / "data"
    write_dataset(root, per_class=4)
    (root / "train" / "c1" / "broken.jpg").write_bytes(b"not an image at all")
    sink = Recorder()
    result = PyTorchTrainer(overlap=True).train(
        make_request(tmp_path, splits_of_folder(root), batch_size=2, epochs=2), sink)
    [skipped] = [m for m in sink.messages if m.startswith("skipped")]
    assert "train/c1/broken.jpg: " in skipped
    m = manifest_of(result)
    assert m["dataset"]["skipped"]["train"] == 1
    assert all(h["train_loss"] == h["train_loss"] for h in result.metrics["history"])  # no NaN


def test_a_class_with_no_readable_image_still_fails_the_job(tmp_path, slow_decode):
    root = tmp_path / "data"
    write_dataset(root, per_class=2)
    for f in (root / "train" / "c2").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(DatasetInvalid, match="'c2' has no readable training images"):
        PyTorchTrainer(overlap=True).train(
            make_request(tmp_path, splits_of_folder(root), batch_size=2), Recorder())


def test_a_job_cancelled_while_filling_leaves_no_decode_running(tmp_path, tiny_splits,
                                                                 slow_decode):
    class CancelAtFirstStep(Recorder):
        def __call__(self, p):  # type: ignore[no-untyped-def]
            if p.step == 1:
                raise JobCancelled("job-1")

    with pytest.raises(JobCancelled):
        PyTorchTrainer(overlap=True).train(
            make_request(tmp_path, tiny_splits, batch_size=4), CancelAtFirstStep())
    assert not [t for t in threading.enumerate() if t.name == "cache-fill"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_filled_cache_trains_the_model_the_plain_one_does(tmp_path, monkeypatch):
    """nvJPEG fills the GPU cache piece by piece (pieces of 16) while epochs train: the
    model learns as it does from a cache decoded first (on an H200 a fill that shared the
    training stream handed back chance-level models: filling.py)."""
    monkeypatch.setattr(filling, "PIECE", 16)
    zip_path = make_dataset_zip(tmp_path / "colours.zip", classes=4,
                                per_class={"train": 120, "val": 10, "test": 10})
    splits = splits_of(zip_path, tmp_path / "data")
    runs = {}
    for overlap in (True, False):
        request = any_device_request(tmp_path / str(overlap), splits, batch_size=16, epochs=3)
        result = PyTorchTrainer(overlap=overlap).train(request, Recorder())
        decoder = manifest_of(result)["input"]["decoder"]
        # every image by nvJPEG (480 training, 40 validation, 40 test)
        assert decoder["overlapped"] is overlap and decoder["images"].get("nvjpeg") == 560
        runs[overlap] = result
    assert runs[True].accuracy >= 0.9 and runs[False].accuracy >= 0.9
    assert all(h["train_loss"] == h["train_loss"] for h in runs[True].metrics["history"])


def test_unreadable_rows_are_marked_while_filling_and_dropped_when_settled(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, per_class=3)
    broken = root / "train" / "c1" / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    items = [(p, int(p.parent.name[1:])) for p in sorted((root / "train").rglob("*.*"))]
    order = torch.arange(len(items)).flip(0)
    split = FillingSplit(items, PilDecoder(32, 1), lambda p: p, 32, order,
                         torch.device("cpu"), pin=False)
    row = [p for p, _ in items].index(broken)
    # while filling: the unreadable row is left out of the batch that holds it
    [(images, labels)] = list(split.batches([torch.arange(len(items))]))
    assert len(images) == len(items) - 1 and split.filling
    assert labels.tolist() == [lab for p, lab in items if p != broken]
    assert split.bad[row] and int(split.bad.sum()) == 1
    split.settle()
    assert len(split) == len(items) - 1 and broken not in split.paths
    assert split.labels.tolist() == [lab for p, lab in items if p != broken]
    [skipped] = split.skipped
    assert "broken.jpg" in skipped and not split.filling
