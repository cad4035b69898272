"""The streamed path on a GPU: a split over the memory budget decoded on every pass in batches
on the device (nvJPEG, `decoding.JpegDecoder`), instead of image by image by loader processes.

While a batch trains, a thread decodes the next ones (`AHEAD`): it reads their compressed
bytes (slices of the zip's memory map, by threads), hands them to nvJPEG as one list, and
resizes them on the device, on a CUDA stream of its own; the training stream waits for that
batch's event only. No per-image Python runs on the training thread. What nvJPEG cannot take
(other formats, CMYK or rotated JPEGs) goes to PIL in that thread, as in the cached path; an
image that turns out unreadable is dropped from its batch (it was checked once up front, as
the loader's path does).

On an H200, nvJPEG beside queued training steps decoded only 1,200-2,700 images/s (13,000-
29,000 alone), whether our side stream had normal or high priority (torchvision decodes on a
stream of its own); the training kept its pace (bench/stream_probe.py, results in
bench/results/trainer_gpu.md). Decoding processes do not take turns with the GPU: 15 of them
decoded 4,700-5,400 images/s beside the same steps. So with `cpu` (PIL over processes,
`decoding.PilDecoder`) the first part of each batch is decoded by the processes while nvJPEG
decodes the rest; `share` is that part, fixed or balanced batch by batch so that both parts
take as long (`Share`). The batch keeps its order: the processes' rows first, as they came."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from .data import Locate, StreamedSplit
from .decoding import JpegDecoder, PilDecoder
from .host_feed import run_ahead
from .sources import on_disk

AHEAD = 3  # batches decoded ahead of the one training
FIRST_SHARE = 0.3  # the CPU's part of the first batch, when balanced
SHARE_BOUNDS = (0.05, 0.95)  # a balanced share keeps both decoders measured


class Share:
    """The part of each batch the CPU's processes decode: `fixed`, or (None) balanced from
    each batch's rates, halfway towards the share at which both parts would end together."""

    def __init__(self, fixed: float | None = None) -> None:
        if fixed is not None and not 0.0 <= fixed <= 1.0:
            raise ValueError(f"a CPU share is a fraction from 0 to 1, not {fixed}")
        self.fixed = fixed
        self.value = FIRST_SHARE if fixed is None else fixed

    def rows(self, n: int) -> int:
        return min(n, round(n * self.value))

    def update(self, cpu_rate: float, gpu_rate: float) -> None:
        """Images a second of each part of the batch just decoded."""
        if self.fixed is not None or cpu_rate <= 0 or gpu_rate <= 0:
            return
        target = cpu_rate / (cpu_rate + gpu_rate)
        low, high = SHARE_BOUNDS
        self.value = min(high, max(low, (self.value + target) / 2))


class DeviceStreamedSplit(StreamedSplit):
    """StreamedSplit's images and labels, decoded per batch by `decoder` on its device."""

    def __init__(self, items: Sequence[tuple[Path, int]], decoder: JpegDecoder, threads: int,
                 locate: Locate = on_disk, cpu: PilDecoder | None = None,
                 share: Share | None = None) -> None:
        super().__init__(items, decoder.size, threads, workers=0, locate=locate)
        self.decoder, self.cpu = decoder, cpu
        self.share = share or Share(None if cpu is not None else 0.0)
        self.device = decoder.device

    def batches(self, chunks: Sequence[torch.Tensor]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cuda = self.device.type == "cuda"
        side = torch.cuda.Stream(self.device) if cuda else None
        with ThreadPoolExecutor(1, thread_name_prefix="device-stream") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="device-stream-cpu") as helper:
            yield from run_ahead(pool, lambda idx: self._decode(idx.cpu(), side, helper),
                                 chunks, AHEAD, self.device)

    def _decode(self, idx: torch.Tensor, side: torch.cuda.Stream | None,
                helper: ThreadPoolExecutor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        rows = idx.tolist()
        k = self.share.rows(len(rows)) if self.cpu is not None else 0
        on_cpu = helper.submit(self._on_cpu, rows[:k]) if k else None
        if side is None:
            return self._decoded(rows, k, on_cpu) + (None,)
        with torch.cuda.stream(side):
            images, labels = self._decoded(rows, k, on_cpu)
            done = torch.cuda.Event()
            done.record(side)
        return images, labels, done

    def _on_cpu(self, rows: list[int]) -> tuple[torch.Tensor, list[int], float]:
        """The CPU's part: decoded by the processes, page-locked for the copy; its seconds."""
        t0 = time.perf_counter()
        assert self.cpu is not None
        decoded = self.cpu.decode([self.sources[i] for i in rows])
        images = decoded.images.pin_memory() if self.device.type == "cuda" else decoded.images
        return images, decoded.ok, time.perf_counter() - t0

    def _decoded(self, rows: list[int], k: int,
                 on_cpu: Future[tuple[torch.Tensor, list[int], float]] | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = time.perf_counter()
        decoded = self.decoder.decode([self.sources[i] for i in rows[k:]])
        kept = [rows[k + i] for i in decoded.ok]
        images = decoded.images
        if on_cpu is not None:
            if self.device.type == "cuda":  # the device part's own time, for the balance
                torch.cuda.current_stream(self.device).synchronize()
            gpu_seconds = time.perf_counter() - t0
            cpu_images, cpu_ok, cpu_seconds = on_cpu.result()
            self.share.update(len(cpu_ok) / max(cpu_seconds, 1e-6),
                              len(decoded.ok) / max(gpu_seconds, 1e-6))
            images = torch.cat([cpu_images.to(self.device, non_blocking=True), images])
            kept = [rows[i] for i in cpu_ok] + kept
        labels = self.labels[torch.tensor(kept, dtype=torch.long)]
        return images, labels.to(self.device, non_blocking=True)
