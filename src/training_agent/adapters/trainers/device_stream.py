"""The streamed path on a GPU: a split over the memory budget decoded on every pass in batches
on the device (nvJPEG, `decoding.JpegDecoder`), instead of image by image by loader processes.

While a batch trains, a thread decodes the next ones (`AHEAD`): it reads their compressed
bytes (slices of the zip's memory map, by threads), hands them to nvJPEG as one list, and
resizes them on the device, on a CUDA stream of its own; the training stream waits for that
batch's event only. No per-image Python runs on the training thread. What nvJPEG cannot take
(other formats, CMYK or rotated JPEGs) goes to PIL in that thread, as in the cached path; an
image that turns out unreadable is dropped from its batch (it was checked once up front, as
the loader's path does)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from .data import Locate, StreamedSplit
from .decoding import JpegDecoder
from .sources import on_disk

AHEAD = 3  # batches decoded ahead of the one training


class DeviceStreamedSplit(StreamedSplit):
    """StreamedSplit's images and labels, decoded per batch by `decoder` on its device."""

    def __init__(self, items: Sequence[tuple[Path, int]], decoder: JpegDecoder, threads: int,
                 locate: Locate = on_disk) -> None:
        super().__init__(items, decoder.size, threads, workers=0, locate=locate)
        self.decoder = decoder
        self.device = decoder.device

    def batches(self, chunks: Sequence[torch.Tensor]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cuda = self.device.type == "cuda"
        side = torch.cuda.Stream(self.device) if cuda else None
        todo = iter(chunks)
        pending: deque[Future[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]]] = \
            deque()
        with ThreadPoolExecutor(1, thread_name_prefix="device-stream") as pool:
            def submit() -> None:
                idx = next(todo, None)
                if idx is not None:
                    pending.append(pool.submit(self._decode, idx.cpu(), side))

            try:
                for _ in range(AHEAD):
                    submit()
                while pending:
                    images, labels, done = pending.popleft().result()
                    submit()
                    if done is not None:  # the training stream waits for this batch only
                        current = torch.cuda.current_stream(self.device)
                        current.wait_event(done)
                        images.record_stream(current)
                        labels.record_stream(current)
                    yield images, labels
            finally:
                for future in pending:
                    future.cancel()

    def _decode(self, idx: torch.Tensor, side: torch.cuda.Stream | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        rows = idx.tolist()
        if side is None:
            return self._decoded(rows) + (None,)
        with torch.cuda.stream(side):
            images, labels = self._decoded(rows)
            done = torch.cuda.Event()
            done.record(side)
        return images, labels, done

    def _decoded(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = self.decoder.decode([self.sources[i] for i in rows])
        labels = self.labels[torch.tensor(rows, dtype=torch.long)[decoded.ok]]
        return decoded.images, labels.to(self.device, non_blocking=True)
