"""The streamed path on a device (device_stream.py): each batch decoded by the batched JPEG
decoder, ahead of training, in the chunks' order, with its labels; run here on the CPU
(libjpeg-turbo through the same interface), and with nvJPEG where a CUDA GPU is present."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training_agent.adapters.trainers.data import chunks_of
from training_agent.adapters.trainers.decoding import (
    MEAN_TOLERANCE,
    JpegDecoder,
    PilDecoder,
)
from training_agent.adapters.trainers.device_stream import (
    FIRST_SHARE,
    SHARE_BOUNDS,
    DeviceStreamedSplit,
    Share,
)
from training_agent.adapters.trainers.images import load_image
from training_agent.adapters.trainers.sources import release, source_of
from training_agent.domain.archive import open_dataset


def photo(seed: int, size: tuple[int, int] = (80, 60), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 1, 3)) + np.zeros((size[1], size[0], 3))
    noise = rng.normal(0, 20, (size[1], size[0], 3))
    buf = io.BytesIO()
    Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def splits(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for c in range(3):
            for i in range(7):
                png = i == 3  # not a JPEG: the PIL fallback takes it
                zf.writestr(f"train/c{c}/{i}.{'png' if png else 'jpg'}",
                            photo(10 * c + i, fmt="PNG" if png else "JPEG"))
        zf.writestr("train/c1/broken.jpg", b"\xff\xd8\xff not a whole jpeg")
    found = open_dataset(tmp_path / "d.zip", tmp_path / "data", 0.0, 0)
    yield found
    release(found.archive)


def streamed(splits, device: torch.device, cpu: PilDecoder | None = None,  # type: ignore[no-untyped-def]
             share: Share | None = None) -> DeviceStreamedSplit:
    decoder = JpegDecoder(24, device, PilDecoder(24, 1), keep_on_device=True)
    return DeviceStreamedSplit(splits.train + splits.val, decoder, 2, source_of(splits),
                               cpu, share)


def check_batches(split: DeviceStreamedSplit, device: torch.device) -> None:
    assert len(split) == 21 and len(split.skipped) == 1  # the broken one, found up front
    assert split.skipped[0].startswith("c1/broken.jpg: ")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    chunks = chunks_of(order, 4)
    seen = 0
    for idx, (images, labels) in zip(chunks, split.batches(chunks), strict=True):
        assert images.device.type == device.type and images.dtype == torch.uint8
        assert images.shape == (len(idx), 3, 24, 24)
        assert labels.tolist() == split.labels[idx].tolist()
        for row, i in enumerate(idx.tolist()):
            ref = torch.from_numpy(load_image(split.sources[i], 24)).permute(2, 0, 1)
            diff = (images[row].cpu().float() - ref.float()).abs().mean()
            assert diff <= MEAN_TOLERANCE, (split.paths[i], float(diff))
        seen += len(idx)
    assert seen == len(split)


def test_batches_are_decoded_in_order_with_their_labels_on_the_cpu(splits):
    check_batches(streamed(splits, torch.device("cpu")), torch.device("cpu"))


@pytest.mark.parametrize("fixed", [0.5, 1.0, None])
def test_a_share_of_each_batch_decoded_by_the_cpus_processes_keeps_order_and_labels(
        splits, fixed):
    """The CPU's part (half, all, or balanced) comes first in each batch, as the chunk had
    it; every image within tolerance of the reference preprocessing, with its label."""
    with PilDecoder(24, 2) as cpu:
        split = streamed(splits, torch.device("cpu"), cpu, Share(fixed))
        check_batches(split, torch.device("cpu"))
        if fixed is None:  # balanced: moved from its first value, within its bounds
            assert split.share.value != FIRST_SHARE
            assert SHARE_BOUNDS[0] <= split.share.value <= SHARE_BOUNDS[1]


def test_a_balanced_share_moves_halfway_towards_equal_finishing_times():
    share = Share()
    assert share.value == FIRST_SHARE and share.rows(512) == round(512 * FIRST_SHARE)
    share.update(cpu_rate=5_000, gpu_rate=15_000)  # equal times at a share of 0.25
    assert share.value == pytest.approx((FIRST_SHARE + 0.25) / 2)
    for _ in range(30):
        share.update(cpu_rate=100, gpu_rate=10_000_000)  # nvJPEG alone would do: the floor
    assert share.value == SHARE_BOUNDS[0] and share.rows(512) > 0
    fixed = Share(0.4)
    fixed.update(cpu_rate=1, gpu_rate=1000)
    assert fixed.value == 0.4 and Share(0.0).rows(512) == 0
    with pytest.raises(ValueError, match="from 0 to 1"):
        Share(1.5)


def test_an_unfinished_pass_leaves_nothing_running(splits):
    split = streamed(splits, torch.device("cpu"))
    batches = split.batches(chunks_of(torch.arange(len(split)), 2))
    next(batches)
    batches.close()  # the loop stopped early (a time budget, a cancelled job)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA GPU")
def test_batches_are_decoded_by_nvjpeg_on_the_gpu(splits):
    device = torch.device("cuda")
    check_batches(streamed(splits, device), device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA GPU")
@pytest.mark.parametrize("fixed", [0.5, None])
def test_batches_are_decoded_by_nvjpeg_and_the_cpus_processes_on_the_gpu(splits, fixed):
    device = torch.device("cuda")
    with PilDecoder(24, 2) as cpu:
        check_batches(streamed(splits, device, cpu, Share(fixed)), device)


def test_the_manifest_says_where_a_balanced_share_ended():
    from training_agent.adapters.trainers.run_data import RunData

    share = Share()
    share.update(cpu_rate=5_000, gpu_rate=15_000)
    said = {"name": "nvjpeg", "streamed": True, "cpu_share": "balanced", "cpu_processes": 15}
    data = RunData({}, None, said, {}, has_val=True, smallest_shard=1, share=share)
    assert data.described() == {**said, "cpu_share_last": round(share.value, 3)}
    unshared = RunData({}, None, said, {}, has_val=True, smallest_shard=1)
    assert unshared.described() == said
