"""Over the memory budget the decoded cache is a file on the job's scratch disk (issue 10, item
4; disk_cache.py): decoded once, read on every later pass. What a user would check: the job
trains the model the in-memory cache gives, the images are decoded once and not on every
epoch, the file exists while training and is gone after, the manifest says where the cache
was, unreadable images are still skipped, and a disk that cannot hold it (or a budget of 0)
streams as before, saying so. Batches of a host cache go to a GPU through host_feed.py: its
order, labels and waits are checked here on the CPU."""

from __future__ import annotations

import errno
import json
import threading
from dataclasses import replace

import pytest
import torch

from training_agent.adapters.trainers import disk_cache, environment, host_feed
from training_agent.adapters.trainers.data import CachedSplit, compact
from training_agent.adapters.trainers.decoding import PilDecoder
from training_agent.adapters.trainers.filling import FillingSplit
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.ports import EpochProgress

from .conftest import Recorder, make_request
from .test_trainer_images import splits_of_folder, write_dataset


def manifest_of(result) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(result.artifacts["manifest.json"].read_text())


def weights(result) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return torch.load(result.artifacts["model.pth"], weights_only=True)


@pytest.fixture
def disk_gb(monkeypatch):
    def set_gb(gb: float | None) -> None:
        monkeypatch.setattr(environment, "_current",
                            replace(environment.current(), disk_cache_gb=gb))
    return set_gb


class FilesSeen(Recorder):
    """Notes the cache files present at the first training step."""

    def __init__(self, work) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.folder = work / disk_cache.FOLDER
        self.files: dict[str, int] | None = None

    def __call__(self, p: EpochProgress) -> None:
        if p.step == 1 and self.files is None:
            self.files = {f.name: f.stat().st_size for f in self.folder.glob("*.u8")}
        super().__call__(p)


def test_over_the_memory_budget_the_cache_is_a_file_and_trains_the_same_model(
        tmp_path, tiny_splits, monkeypatch):
    decoded: list[int] = []
    real = PilDecoder.decode

    def counting(self, sources):  # type: ignore[no-untyped-def]
        decoded.append(len(sources))
        return real(self, sources)

    monkeypatch.setattr(PilDecoder, "decode", counting)
    in_memory = PyTorchTrainer(threads=1).train(
        make_request(tmp_path / "a", tiny_splits, epochs=2), Recorder())
    decoded.clear()
    request = make_request(tmp_path / "b", tiny_splits, epochs=2)
    sink = FilesSeen(request.work_dir)
    on_disk = PyTorchTrainer(cache_bytes=0, threads=1).train(request, sink)

    # the files were there while training: one per split, 3 x 32 x 32 bytes an image
    assert sink.files == {"train-rank0.u8": 36 * 3072, "val-rank0.u8": 12 * 3072,
                          "test-rank0.u8": 12 * 3072}
    assert not (request.work_dir / disk_cache.FOLDER).exists()  # and gone after
    [said] = [s for s in sink.messages if "memory budget" in s]
    assert said == ("the decoded images (0.2 MiB) are over the memory budget (0.0 MiB, "
                    "TRAINING_AGENT_CACHE_GB): they are decoded once into a file on the "
                    "scratch disk and read from there on every pass")
    # every image decoded once, not once an epoch
    assert sum(decoded) == 36 + 12 + 12
    m = manifest_of(on_disk)
    assert m["runtime"]["cache"] == "disk" and m["runtime"]["cached"] is True
    assert m["input"]["decoder"]["cache"] == "disk"
    assert manifest_of(in_memory)["runtime"]["cache"] == "host"
    # the same pixels in the same order: the same weights, bit for bit
    a, b = weights(in_memory), weights(on_disk)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_with_no_disk_budget_the_images_are_streamed(tmp_path, tiny_splits, disk_gb):
    disk_gb(0)
    request = make_request(tmp_path, tiny_splits, epochs=1)
    sink = FilesSeen(request.work_dir)
    m = manifest_of(PyTorchTrainer(cache_bytes=0, threads=1).train(request, sink))
    assert m["runtime"]["cache"] is None and m["runtime"]["cached"] is False
    assert m["input"]["decoder"]["streamed"] is True and sink.files == {}
    [said] = [s for s in sink.messages if "memory budget" in s]
    assert "the scratch disk's (0.0 MiB, TRAINING_AGENT_DISK_CACHE_GB)" in said
    assert said.endswith("decoded again on every pass (streamed), which is slower")


def test_a_disk_that_cannot_hold_the_cache_streams_and_says_so(tmp_path, tiny_splits,
                                                               monkeypatch):
    def full(fd, offset, length):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk_cache.os, "posix_fallocate", full)
    request = make_request(tmp_path, tiny_splits, epochs=1)
    sink = Recorder()
    m = manifest_of(PyTorchTrainer(cache_bytes=0, threads=1).train(request, sink))
    assert m["input"]["decoder"]["streamed"] is True
    [said] = [s for s in sink.messages if "scratch disk" in s]
    assert "could not be allocated" in said and "No space left on device" in said
    assert not list(request.work_dir.rglob("*.u8"))


def test_unreadable_images_are_skipped_from_a_cache_on_disk(tmp_path, disk_gb):
    disk_gb(None)
    root = tmp_path / "data"
    write_dataset(root, per_class=4)
    (root / "train" / "c1" / "broken.jpg").write_bytes(b"not an image at all")
    sink = Recorder()
    result = PyTorchTrainer(cache_bytes=0, overlap=True).train(
        make_request(tmp_path, splits_of_folder(root), batch_size=2, epochs=2), sink)
    m = manifest_of(result)
    assert m["runtime"]["cache"] == "disk" and m["input"]["decoder"]["overlapped"] is True
    assert m["dataset"]["skipped"]["train"] == 1
    assert any("train/c1/broken.jpg: " in s for s in sink.messages)


def test_a_filling_cache_in_a_file_drops_unreadable_rows_in_place(tmp_path):
    """Settled, the file's rows are the readable images in order, as a cache in memory."""
    root = tmp_path / "data"
    write_dataset(root, per_class=5)
    for name in ("a.jpg", "b.jpg"):
        (root / "train" / "c0" / name).write_bytes(b"junk")
    items = [(p, int(p.parent.name[1:])) for p in sorted((root / "train").rglob("*.*"))]
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(1))

    def filled(into):  # type: ignore[no-untyped-def]
        split = FillingSplit(items, PilDecoder(32, 1), lambda p: p, 32, order,
                             torch.device("cpu"), pin=False, into=into)
        split.settle()
        return split

    path = tmp_path / "cache" / "train.u8"
    on_disk = filled(disk_cache.file_tensor(path, (len(items), 3, 32, 32)))
    in_memory = filled(None)
    assert len(on_disk) == len(items) - 2 == len(in_memory)
    assert on_disk.paths == in_memory.paths
    assert torch.equal(on_disk.images, in_memory.images)
    assert on_disk.images.untyped_storage().nbytes() == path.stat().st_size  # the file's


def test_compact_moves_the_kept_rows_forward_in_place():
    images = torch.arange(3000, dtype=torch.int64).view(1000, 3) % 251
    keep = torch.sort(torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:700])[0]
    expected = images[keep].clone()
    storage = images.untyped_storage().data_ptr()
    out = compact(images, keep)
    assert torch.equal(out, expected) and out.untyped_storage().data_ptr() == storage


def test_file_tensor_allocates_the_whole_file_or_fails_leaving_none(tmp_path, monkeypatch):
    path = tmp_path / "c" / "x.u8"
    t = disk_cache.file_tensor(path, (4, 3, 8, 8))
    assert path.stat().st_size == 4 * 3 * 64 and t.shape == (4, 3, 8, 8)
    t[2] = 7
    del t
    again = torch.from_file(str(path), shared=False, size=4 * 192, dtype=torch.uint8)
    assert int(again.view(4, 192)[2].max()) == 7  # written through to the file

    def full(fd, offset, length):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk_cache.os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left"):
        disk_cache.file_tensor(tmp_path / "c" / "y.u8", (4, 3, 8, 8))
    assert not (tmp_path / "c" / "y.u8").exists()


def test_without_posix_fallocate_the_file_is_sized_all_the_same(tmp_path, monkeypatch):
    monkeypatch.delattr(disk_cache.os, "posix_fallocate")  # as on macOS
    t = disk_cache.file_tensor(tmp_path / "z.u8", (2, 3, 4, 4))
    t[1] = 9
    assert (tmp_path / "z.u8").stat().st_size == 96 and int(t[1].min()) == 9


def test_the_disk_budget_is_the_setting_or_half_the_free_space(tmp_path, disk_gb):
    import shutil

    disk_gb(None)
    free = shutil.disk_usage(tmp_path).free
    assert abs(disk_cache.disk_budget(tmp_path / "not" / "yet") - free // 2) < free // 100
    disk_gb(0.5)
    assert disk_cache.disk_budget(tmp_path) == 1 << 29
    disk_gb(0)
    assert disk_cache.disk_budget(tmp_path) == 0


def _cached(n: int = 50) -> CachedSplit:
    split = CachedSplit.__new__(CachedSplit)
    split.images = torch.arange(n * 3 * 4 * 4, dtype=torch.int64).view(n, 3, 4, 4).to(
        torch.uint8)
    split.labels = torch.arange(n) % 7
    return split


def test_host_feed_serves_each_batch_as_the_plain_gather_does():
    split = _cached()
    chunks = list(torch.randperm(50, generator=torch.Generator().manual_seed(2)).split(8))
    fed = list(host_feed.feed(split.images, split.labels, chunks, torch.device("cpu")))
    assert len(fed) == len(chunks)
    for (x, y), idx in zip(fed, chunks, strict=True):
        assert torch.equal(x, split.images[idx]) and torch.equal(y, split.labels[idx])
    # what `prepare` says a batch reads is what it gets (a filling cache leaves rows out)
    fed = list(host_feed.feed(split.images, split.labels, chunks, torch.device("cpu"),
                              prepare=lambda idx: idx[idx % 2 == 0]))
    assert [y.tolist() for _, y in fed] == [split.labels[c[c % 2 == 0]].tolist()
                                            for c in chunks]


def test_host_feed_raises_what_a_batch_raised_and_leaves_no_thread_behind():
    split = _cached()
    chunks = list(torch.arange(50).split(10))

    def failing(idx: torch.Tensor) -> torch.Tensor:
        if int(idx[0]) == 20:
            raise RuntimeError("the decode of the training images stopped")
        return idx

    batches = host_feed.feed(split.images, split.labels, chunks, torch.device("cpu"),
                             prepare=failing)
    assert next(batches)[1].tolist() == split.labels[:10].tolist()
    next(batches)
    with pytest.raises(RuntimeError, match="decode of the training images stopped"):
        next(batches)
    stopped_early = host_feed.feed(split.images, split.labels, chunks, torch.device("cpu"))
    next(stopped_early)
    stopped_early.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("host-feed")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_caches_on_disk_and_in_host_memory_train_as_the_gpu_cache_does(tmp_path,
                                                                               monkeypatch):
    """The disk cache (filled by nvJPEG during the first epoch) and a cache in page-locked host
    memory (as when it would take over a quarter of the free GPU memory), both fed to the GPU
    by host_feed's thread through page-locked buffers: they learn as the GPU cache does."""
    from training_agent.adapters.trainers import filling
    from training_agent.testing.datasets import make_dataset_zip

    from .conftest import splits_of

    monkeypatch.setattr(filling, "PIECE", 16)
    zip_path = make_dataset_zip(tmp_path / "colours.zip", classes=4,
                                per_class={"train": 120, "val": 10, "test": 10})
    splits = splits_of(zip_path, tmp_path / "data")
    real_free = torch.cuda.mem_get_info
    runs = {}
    for place in ("gpu", "disk", "host"):
        with monkeypatch.context() as m:
            if place == "host":  # the cache would take over a quarter of what is free
                m.setattr(torch.cuda, "mem_get_info", lambda *a: (1 << 20, real_free(*a)[1]))
            request = make_request(tmp_path / place, splits, batch_size=16, epochs=3,
                                   device="cuda")
            result = PyTorchTrainer(cache_bytes=0 if place == "disk" else None).train(
                request, Recorder())
        m_ = manifest_of(result)
        assert m_["runtime"]["cache"] == place
        assert m_["input"]["decoder"]["images"].get("nvjpeg") == 560
        runs[place] = result
    assert all(r.accuracy >= 0.9 for r in runs.values()), {p: r.accuracy for p, r in runs.items()}
