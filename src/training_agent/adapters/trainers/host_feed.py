"""Batches of a cache in host memory (page-locked RAM, or the disk cache's mapping) fed to a GPU
without the training thread waiting on them.

A plain gather (`images[idx]`) allocates a fresh batch each step: for a batch of 256 images at
224 px that is 38 MB of new pages, and on the 2-core CPU here it ran at 6,000 images/s against
63,000 for the same gather into a buffer that is reused (`index_select(out=...)`); from pageable
memory the copy to the GPU is synchronous as well. So a thread gathers each batch, `AHEAD`
batches ahead, into one of a few page-locked buffers and copies it to the device on a CUDA
stream of its own; the training stream waits for that batch's copy only, and a buffer is
refilled only once its last copy has finished. `prepare(idx)` runs on that thread first: the
rows a batch really reads (a cache still filling waits there for them, filling.py).

On a CPU there is nothing to copy: the same thread still gathers ahead (a fresh tensor per
batch, since the consumer may keep it), which is what the tests run."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

AHEAD = 3  # batches gathered ahead of the one training

Fed = tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]


def _same(idx: torch.Tensor) -> torch.Tensor:
    return idx


class _Ring:
    """Page-locked batch buffers, each reused only after its last copy to the GPU ended."""

    def __init__(self, count: int, width: int, row: torch.Size, device: torch.device) -> None:
        self.device, self.count, self.width, self.row = device, count, width, row
        self.buffers: list[torch.Tensor | None] = [None] * count
        self.copied: list[torch.cuda.Event | None] = [None] * count
        self.side = torch.cuda.Stream(device)

    def take(self, k: int, n: int) -> torch.Tensor:
        j = k % self.count
        copied, buffer = self.copied[j], self.buffers[j]
        if copied is not None:
            copied.synchronize()
        if buffer is None:
            buffer = self.buffers[j] = torch.empty((self.width, *self.row), dtype=torch.uint8,
                                                   pin_memory=True)
        return buffer[:n]

    def send(self, k: int, images: torch.Tensor, labels: torch.Tensor) -> Fed:
        with torch.cuda.stream(self.side):
            x = images.to(self.device, non_blocking=True)
            y = labels.pin_memory().to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.side)
        self.copied[k % self.count] = done
        return x, y, done


def feed(images: torch.Tensor, labels: torch.Tensor, chunks: Sequence[torch.Tensor],
         device: torch.device, prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
         ahead: int = AHEAD) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of each chunk of row indices, on `device`; `images` and `labels` are
    on the CPU."""
    width = max((len(c) for c in chunks), default=0)
    ring = (_Ring(ahead + 1, width, images.shape[1:], device)
            if device.type == "cuda" and width else None)

    def gather(job: tuple[int, torch.Tensor]) -> Fed:
        k, idx = job
        rows = prepare(idx.cpu())
        y = labels[rows]
        if ring is None:
            return images[rows], y, None
        x = ring.take(k, len(rows))
        torch.index_select(images, 0, rows, out=x)
        return ring.send(k, x, y)

    with ThreadPoolExecutor(1, thread_name_prefix="host-feed") as pool:
        yield from run_ahead(pool, gather, enumerate(chunks), ahead, device)


def run_ahead(pool: ThreadPoolExecutor, work: Callable[[Any], Fed], jobs: Iterable[Any],
              ahead: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`work(job)` for each job on `pool`, `ahead` at a time, yielded in order; a result
    with an event (made on a CUDA stream of the work's own) is waited for by the current
    stream only, and its tensors are marked as used there. Work not begun when the consumer
    stops is cancelled."""
    todo = iter(jobs)
    pending: deque[Future[Fed]] = deque()

    def submit() -> None:
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(pool.submit(work, nxt))

    try:
        for _ in range(ahead):
            submit()
        while pending:
            x, y, done = pending.popleft().result()
            submit()
            if done is not None:  # the training stream waits for this batch only
                current = torch.cuda.current_stream(device)
                current.wait_event(done)
                x.record_stream(current)
                y.record_stream(current)
            yield x, y
    finally:
        for future in pending:
            future.cancel()

__all__ = ["AHEAD", "feed", "run_ahead"]
