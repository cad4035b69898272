"""The image data of one split as uint8 batches: a decoded in-memory tensor cache when it fits
the memory budget, else streamed from disk by DataLoader worker processes.

Either way a batch is (uint8 N x 3 x S x S, int64 labels) on the CPU; conversion to float,
augmentation and normalisation happen batched on the training device (see augment.py)."""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from . import environment, host_feed
from .decoding import Decoder, PilDecoder
from .images import load_image, quiet, unreadable
from .sources import Source, on_disk
from .sources import read as read_source

Locate = Callable[[Path], Source]  # an image's path -> where its bytes are (sources.source_of)
PIECE = 512  # images decoded per call into a tensor given (and by filling.py)

IGNORE = -100  # label of an image that turned out unreadable while streaming


def available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_cache_budget() -> int:
    """Bytes the decoded cache may use: TRAINING_AGENT_CACHE_GB (settings), else 40% of free
    memory capped at 16 GiB."""
    gb = environment.current().cache_gb
    if gb is not None:
        return int(gb * (1 << 30))
    return min(int(available_memory() * 0.4), 16 << 30)


class CachedSplit:
    """All images decoded once (by `decoder`, see decoding.py) into a uint8 tensor: in memory,
    or `into` one allocated in a file (N x 3 x S x S, disk_cache.file_tensor), piece by
    piece."""

    cached = True
    filling = False  # see filling.FillingSplit: a cache still being decoded
    in_file = False  # the disk cache's mapping (disk_cache.py), not memory
    feed_to: torch.device | None = None  # host memory fed to this GPU by a thread (host_feed)

    def __init__(self, items: Sequence[tuple[Path, int]], decoder: Decoder,
                 locate: Locate = on_disk, into: torch.Tensor | None = None) -> None:
        self.in_file = into is not None
        if into is not None:
            self._decode_into(items, decoder, locate, into)
            return
        decoded = decoder.decode([locate(p) for p, _ in items])
        ok = decoded.ok
        self.images = decoded.images
        self.labels = torch.tensor([items[i][1] for i in ok], dtype=torch.int64)
        self.paths = [items[i][0] for i in ok]  # row order: the dataset check and report read it
        self.skipped = decoded.errors
        self.decoded_by = decoded.counts  # images by decoder (nvjpeg, pil, ...)

    def _decode_into(self, items: Sequence[tuple[Path, int]], decoder: Decoder,
                     locate: Locate, whole: torch.Tensor) -> None:
        """PIECE images at a time, the readable ones written one after another."""
        kept: list[int] = []
        self.skipped, counts = [], Counter[str]()
        for lo in range(0, len(items), PIECE):
            part = items[lo:lo + PIECE]
            decoded = decoder.decode([locate(p) for p, _ in part])
            whole[len(kept):len(kept) + len(decoded.ok)] = decoded.images.cpu()
            kept += [lo + i for i in decoded.ok]
            self.skipped += decoded.errors
            counts.update(decoded.counts)
        self.images = whole[:len(kept)]
        self.labels = torch.tensor([items[i][1] for i in kept], dtype=torch.int64)
        self.paths = [items[i][0] for i in kept]
        self.decoded_by = dict(counts)

    def pin(self) -> None:
        """Page-locked host memory: host-to-GPU copies of batches run asynchronously."""
        try:
            self.images = self.images.pin_memory()
        except RuntimeError:  # page-locking that much memory failed: pageable copies
            pass

    def feed(self, device: torch.device) -> None:
        """Batches go to `device` from host memory through host_feed's thread (a cache in
        RAM is page-locked first; the disk cache's mapping is read as it is)."""
        if not self.in_file:
            self.pin()
        self.feed_to = device

    @property
    def nbytes(self) -> int:
        return self.images.numel()

    def to(self, device: torch.device) -> None:
        """Keep the cache on the GPU: a batch is then a gather in device memory."""
        self.images = self.images.to(device)
        self.labels = self.labels.to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, chunks: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.feed_to is not None:
            yield from host_feed.feed(self.images, self.labels, chunks, self.feed_to)
            return
        for idx in chunks:
            idx = idx.to(self.images.device)
            yield self.images[idx], self.labels[idx]


class _Files(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[tuple[Source, int]], size: int) -> None:
        self.items, self.size = list(items), size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        try:
            return torch.from_numpy(load_image(path, self.size)).permute(2, 0, 1), label
        except Exception:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), IGNORE


def _readable(src: Source) -> str | None:
    try:
        with quiet(), Image.open(io.BytesIO(read_source(src))) as img:
            img.verify()
        return None
    except Exception as exc:
        return unreadable(src, exc)


class StreamedSplit:
    """Images decoded on every pass by `workers` processes (for datasets over the budget)."""

    cached = False
    filling = False

    def __init__(self, items: Sequence[tuple[Path, int]], size: int, threads: int,
                 workers: int, pin: bool = False, locate: Locate = on_disk) -> None:
        located = [locate(p) for p, _ in items]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            errors = list(pool.map(_readable, located, chunksize=64))
        self.skipped = [e for e in errors if e]
        kept = [i for i, e in enumerate(errors) if e is None]
        self.sources = [located[i] for i in kept]  # where each image's bytes are
        self.files = _Files([(located[i], items[i][1]) for i in kept], size)
        self.labels = torch.tensor([items[i][1] for i in kept], dtype=torch.int64)
        self.paths = [items[i][0] for i in kept]
        self.workers, self.pin = workers, pin

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, chunks: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            self.files, batch_sampler=[c.tolist() for c in chunks], num_workers=self.workers,
            pin_memory=self.pin, prefetch_factor=4 if self.workers else None,
        )
        yield from loader


def load_split(items: Sequence[tuple[Path, int]], size: int, threads: int, cache: bool,
               workers: int, pin: bool = False, decoder: Decoder | None = None,
               locate: Locate = on_disk, into: torch.Tensor | None = None
               ) -> CachedSplit | StreamedSplit:
    """A cached split is decoded by `decoder` (default: PIL over `threads` processes), `into`
    a file's tensor if given; `locate` says where each image's bytes are (a file, or a member
    of the dataset's zip)."""
    if cache:
        if decoder is not None:
            return CachedSplit(items, decoder, locate, into)
        with PilDecoder(size, threads) as own:
            return CachedSplit(items, own, locate, into)
    return StreamedSplit(items, size, threads, workers, pin, locate)


def compact(images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The rows `keep` (ascending, on the images' device) moved to the front in place, a piece
    at a time (no second copy of a cache that may fill most of the memory, or a file): the
    first len(keep) rows. Safe in order: row j is written from row keep[j] >= j, and every
    row read later lies at or past the rows written so far."""
    for lo in range(0, len(keep), PIECE):
        part = keep[lo:lo + PIECE]
        images[lo:lo + len(part)] = images[part]
    return images[:len(keep)]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed every random choice of an epoch derives from (its order, its augmentation):
    a resumed run repeats an uninterrupted one exactly."""
    return seed * 1_000_003 + epoch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which an epoch visits a split's n images (on the CPU): a permutation
    seeded by the run's seed and the epoch, the same on every rank."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def chunks_of(order: torch.Tensor, batch_size: int, steps: int | None = None) -> list[torch.Tensor]:
    """Split an index order into `steps` (default ceil(n / batch_size)) nearly equal batches:
    no batch of one (BatchNorm cannot train on it) unless there is only one image. With
    `steps` given (a training epoch's, set when the run began) and fewer than two images a
    step (some found unreadable since, as a filling cache does), a few images come twice."""
    n = len(order)
    if n == 0:
        return []
    if steps and batch_size > 1 and 2 <= n < 2 * steps:
        order = torch.cat([order, order[: 2 * steps - n]])
        n = len(order)
    steps = steps or -(-n // batch_size)
    return [c for c in torch.tensor_split(order, min(steps, n)) if len(c)]
