"""A decoded cache that fills while the first epoch trains: the decode is hidden behind the
model's set-up and the first epoch instead of coming before them.

`FillingSplit` allocates the whole cache (GPU memory, or page-locked host memory) up front,
then a thread decodes the split in the order the first epoch will visit it (`epoch_order`),
`PIECE` images at a time, and marks each piece done (on a GPU: on a CUDA stream of its own,
each piece complete on the device before it is marked; why: docs/trainer.md, "nvJPEG and
streams"). A batch of the first epoch waits only for
the pieces that hold its rows; an unreadable image leaves its row out of its batch (a batch
left empty or with one image takes readable ones already decoded: every rank keeps its
number of steps, and BatchNorm never sees a batch of one).
`settle()` (at the end of the first epoch, or before the results if none ran) waits for the
decode's end and drops the unreadable rows: from then on it is a plain `CachedSplit`. The
memory check that chose the cache's place counted all of it, so the fill never allocates
more than a piece's decode needs.

A resumed run starts at a later epoch whose order differs: its batches wait for the rows they
need wherever the decode has them, which is correct, only less hidden."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from training_agent.domain.errors import DatasetInvalid

from . import host_feed
from .data import PIECE, CachedSplit, Locate, compact
from .decoding import Decoder


def _empty(shape: tuple[int, ...], device: torch.device, pin: bool) -> torch.Tensor:
    images = torch.empty(shape, dtype=torch.uint8, device=device)
    if pin and device.type == "cpu":
        try:  # page-locked: host-to-GPU copies of batches run asynchronously
            images = images.pin_memory()
        except RuntimeError:
            pass
    return images


class FillingSplit(CachedSplit):
    """A split's cache decoded by `decoder` on a thread of its own, in `order` (a CPU
    permutation of the rows); the decoder is closed when the decode ends."""

    def __init__(self, items: Sequence[tuple[Path, int]], decoder: Decoder, locate: Locate,
                 size: int, order: torch.Tensor, device: torch.device, pin: bool,
                 into: torch.Tensor | None = None) -> None:
        n = len(items)
        self.in_file = into is not None  # a file's tensor (disk_cache.file_tensor)
        self.images = into if into is not None else _empty((n, 3, size, size), device, pin)
        self.labels = torch.tensor([lab for _, lab in items], dtype=torch.int64,
                                   device=device)
        self.paths = [p for p, _ in items]
        self.skipped: list[str] = []
        self.decoded_by: dict[str, int] = {}
        self.order = order
        self.position = torch.empty(n, dtype=torch.long)  # each row's place in `order`
        self.position[order] = torch.arange(n)
        self.bad = torch.zeros(n, dtype=torch.bool)  # rows found unreadable
        self.errors: dict[int, str] = {}
        self.done = 0  # how much of `order` is decoded
        self.failure: BaseException | None = None
        self.started = time.monotonic()
        self.seconds = 0.0  # the decode's wall time, once it has ended
        self.waited = 0.0  # what batches spent waiting for it
        self.settled = False
        self.feed_to: torch.device | None = None  # see `feed`
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(items, decoder, locate),
                                        name="cache-fill", daemon=True)
        self._thread.start()

    @property
    def filling(self) -> bool:  # type: ignore[override]
        return not self.settled

    def _fill(self, items: Sequence[tuple[Path, int]], decoder: Decoder, locate: Locate) -> None:
        counts: Counter[str] = Counter()
        device = self.images.device
        # on a GPU the decode runs on a stream of its own, never on the one training queues
        # its kernels on (memory that training has just freed could otherwise be handed to
        # nvJPEG while those kernels still use it), and each piece is complete on the device
        # before a batch may read it
        side = torch.cuda.Stream(device) if device.type == "cuda" else None
        try:
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                self._pieces(items, decoder, locate, counts, side)
            self.decoded_by = dict(counts)
        except BaseException as exc:  # said where a batch or `settle` waits for it
            self.failure = exc
        finally:
            decoder.close()
            with self._lock:
                self.seconds = time.monotonic() - self.started
                self._lock.notify_all()

    def _pieces(self, items: Sequence[tuple[Path, int]], decoder: Decoder, locate: Locate,
                counts: Counter[str], side: torch.cuda.Stream | None) -> None:
        for lo in range(0, len(self.order), PIECE):
            if self._stop.is_set():
                return
            rows = self.order[lo:lo + PIECE]
            decoded = decoder.decode([locate(items[r][0]) for r in rows.tolist()])
            ok = rows[torch.tensor(decoded.ok, dtype=torch.long)]
            if len(ok):
                self.images[ok.to(self.images.device)] = decoded.images.to(self.images.device)
            if side is not None:
                side.synchronize()  # the rows are written before they are said to be
            failed = sorted(set(range(len(rows))) - set(decoded.ok))
            counts.update(decoded.counts)
            with self._lock:
                for k, err in zip(failed, decoded.errors, strict=True):
                    self.bad[rows[k]] = True
                    self.errors[int(rows[k])] = err
                self.done = lo + len(rows)
                self._lock.notify_all()

    def _wait(self, upto: int) -> None:
        """Until the first `upto` images of `order` are decoded."""
        t0 = time.monotonic()
        with self._lock:
            while self.done < upto and self.failure is None:
                if not self._thread.is_alive():
                    raise RuntimeError("the decode of the training images stopped")
                self._lock.wait(timeout=1.0)
        self.waited += time.monotonic() - t0
        if self.failure is not None:
            raise self.failure

    def batches(self, chunks: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.settled:
            yield from super().batches(chunks)
            return
        if self.feed_to is not None:  # host memory to a GPU: waits on host_feed's thread
            yield from host_feed.feed(self.images, self.labels, chunks, self.feed_to,
                                      self._ready)
            return
        for idx in chunks:  # index chunks on the CPU while filling (the epoch loop's order)
            idx = self._ready(idx.cpu()).to(self.images.device, non_blocking=True)
            yield self.images[idx], self.labels[idx]

    def _ready(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows a batch reads (`idx`, on the CPU), once decoded: the unreadable left out."""
        self._wait(int(self.position[idx].max()) + 1 if len(idx) else 0)
        bad = self.bad[idx]
        if bool(bad.any()):
            short = min(2, len(idx))  # no batch of one: BatchNorm cannot train on it
            idx = idx[~bad]
            if len(idx) < short:
                idx = torch.cat([idx, self._stand_in(short - len(idx))])
        return idx

    def feed(self, device: torch.device) -> None:
        """As CachedSplit's, the memory already allocated where it stays (page-locked when
        asked): the fill writes into it."""
        self.feed_to = device

    def _stand_in(self, k: int) -> torch.Tensor:
        """`k` readable rows (repeated if need be), for a batch whose unreadable images left
        it empty or with one image."""
        while True:
            upto = self.done
            seen = self.order[:upto]
            readable = seen[~self.bad[seen]]
            if len(readable):
                return readable[torch.arange(k) % len(readable)]
            if upto == len(self.order):
                raise DatasetInvalid("none of the training images is readable")
            self._wait(upto + 1)

    def settle(self) -> None:
        """Wait for the decode, then drop the unreadable rows: a plain cache from now on."""
        if self.settled:
            return
        self._wait(len(self.order))
        self._thread.join()
        with self._lock:
            if bool(self.bad.any()):
                keep = (~self.bad).nonzero().squeeze(1)
                self.images = compact(self.images, keep.to(self.images.device))
                self.labels = self.labels[keep.to(self.labels.device)]
                self.paths = [self.paths[i] for i in keep.tolist()]
            self.skipped = [self.errors[r] for r in sorted(self.errors)]
            self.settled = True

    def close(self) -> None:
        """Stop the decode (a run that ends before it does)."""
        self._stop.set()
        self._thread.join()


__all__ = ["FillingSplit"]
