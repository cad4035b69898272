"""A run's images: each split's share for this rank, decoded once into a cache (GPU memory,
host memory, or over the memory budget a file on the scratch disk: disk_cache.py), else
streamed: decoded per batch on the GPU, or by loader processes on a CPU; what was skipped; and
the few counts the rest of the run needs from every rank."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import ItemsView
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training_agent.domain.archive import SPLITS
from training_agent.domain.errors import DatasetInvalid

from . import disk_cache, environment
from .data import CachedSplit, StreamedSplit, epoch_order, load_split
from .decoding import PIL_FUNCTION, JpegDecoder, PilDecoder, make_decoder
from .device_stream import DeviceStreamedSplit, Share
from .filling import FillingSplit
from .run_context import RunContext
from .sources import source_of

MAX_LISTED_SKIPS = 20


@dataclass
class RunData:
    splits: dict[str, CachedSplit | StreamedSplit]  # this rank's share of each split
    place: str | None  # where the decoded cache is: "gpu", "host", "disk"; None: streamed
    decoder: dict[str, Any]  # what decoded the images (the manifest's input.decoder)
    skipped: dict[str, int]  # unreadable images per split, all ranks (once settled)
    has_val: bool  # any rank has validation images (else the last epoch is kept)
    smallest_shard: int  # the fewest training images of any rank: the epoch's steps
    started: float = 0.0  # when the decode began (time.monotonic)
    settled: bool = False  # every split decoded, the skips said (see `settle`)
    cpu_decoder: PilDecoder | None = None  # the streamed path's decoding processes, if any
    share: Share | None = None  # the streamed path's CPU part of each batch (on CUDA)
    work_dir: Path | None = None  # the job's scratch folder (the disk cache's files)
    rank: int = 0

    @property
    def cached(self) -> bool:
        """Decoded once (else streamed from the dataset on every pass)."""
        return self.place is not None

    @property
    def gpu_cache(self) -> bool:
        return self.place == "gpu"

    def __getitem__(self, split: str) -> CachedSplit | StreamedSplit:
        return self.splits[split]

    def items(self) -> ItemsView[str, CachedSplit | StreamedSplit]:
        return self.splits.items()

    def total(self, ctx: RunContext, split: str) -> int:
        """The images of `split` over every rank."""
        return int(ctx.dist.sum(torch.tensor(len(self.splits[split]))))

    @classmethod
    def load(cls, ctx: RunContext, image_size: int, cache_bytes: int,
             overlap: bool | None = None) -> RunData:
        """`overlap`: a cached training split fills while the first epoch trains
        (filling.py); validation and test are decoded first. None: when training on CUDA
        (on the CPU the fill's processes would take the training's cores)."""
        t0 = time.monotonic()
        dist, threads = ctx.dist, ctx.threads
        shards = {name: dist.shard(list(getattr(ctx.req.splits, name))) for name in SPLITS}
        place, files = _where(ctx, shards, image_size, cache_bytes)
        cached, gpu_cache = place is not None, place == "gpu"
        workers = 0 if cached else max(1, min(8, threads - (0 if ctx.cuda else 1)))
        if workers and not ctx.cuda:  # loader processes and intra-op threads share the cores
            torch.set_num_threads(max(1, threads - workers))
        fill = cached and (ctx.cuda if overlap is None else overlap)  # alike on every rank
        locate = source_of(ctx.req.splits)  # a member of the zip, read in place
        cpu_decoder, share = None, None
        if not cached and ctx.cuda:  # decoded per batch on the GPU (device_stream.py), a
            # share of each batch by the CPU's processes meanwhile
            streamer = JpegDecoder(image_size, ctx.device, PilDecoder(image_size, 1),
                                   keep_on_device=True)
            fixed = environment.current().stream_cpu_share
            if threads > 2 and fixed != 0.0:
                cpu_decoder = PilDecoder(image_size, threads - 1)
            share = Share(fixed if cpu_decoder is not None else 0.0)
            splits: dict[str, CachedSplit | StreamedSplit] = {
                name: DeviceStreamedSplit(items, streamer, threads, locate, cpu_decoder, share)
                for name, items in shards.items()}
            described = {**streamer.describe(), "streamed": True, "cpu_share": (
                "balanced" if cpu_decoder is not None and fixed is None else share.value),
                "cpu_processes": cpu_decoder.workers if cpu_decoder is not None else 0}
        else:
            decoder = make_decoder(ctx.device, image_size, threads, keep_on_device=gpu_cache)
            try:
                splits = {name: load_split(items, image_size, threads, cached, workers,
                                           pin=ctx.cuda, decoder=decoder, locate=locate,
                                           into=files[name] if files else None)
                          for name, items in shards.items() if not (fill and name == "train")}
                if fill:  # the decoder is now the filling thread's, which closes it
                    ctx.timings["decode_val_test_seconds"] = round(time.monotonic() - t0, 3)
                    splits["train"] = FillingSplit(
                        shards["train"], decoder, locate, image_size,
                        epoch_order(len(shards["train"]), ctx.cfg.seed, 1),
                        ctx.device if gpu_cache else torch.device("cpu"), pin=ctx.cuda,
                        into=files["train"] if files else None)
                    splits = {name: splits[name] for name in SPLITS}
            except BaseException:
                decoder.close()
                if files is not None:
                    disk_cache.remove(ctx.req.work_dir, dist.rank)
                raise
            if not fill:
                decoder.close()
            described = {**decoder.describe(), "images": {}, "overlapped": fill,
                         "cache": place}
            if not cached:  # decoded on every pass by the loader's processes
                described = {"name": "pil", "function": PIL_FUNCTION,
                             "loader_processes": workers, "streamed": True}
        if cached:
            _place(splits, place, ctx.device)
        data = cls(splits, place, described, {},
                   has_val=int(dist.sum(torch.tensor(len(splits["val"])))) > 0,
                   smallest_shard=int(dist.min(torch.tensor(len(splits["train"])))),
                   started=t0, cpu_decoder=cpu_decoder, share=share,
                   work_dir=ctx.req.work_dir, rank=dist.rank)
        if not fill:
            try:
                data.settle(ctx)
            except BaseException:  # e.g. a class left with no readable image
                data.close()
                raise
        return data

    def described(self) -> dict[str, Any]:
        """The manifest's `input.decoder`: with a balanced CPU share, where it ended."""
        if self.share is None or self.share.fixed is not None:
            return self.decoder
        return {**self.decoder, "cpu_share_last": round(self.share.value, 3)}

    def settle(self, ctx: RunContext) -> None:
        """Once every split is decoded (at once, or at the end of the first epoch when the
        training cache fills during it): the skips said and checked, the decode's figures.
        Every rank calls it at the same point (it sums over the ranks)."""
        if self.settled:
            return
        train = self.splits["train"]
        if isinstance(train, FillingSplit):
            train.settle()
            ended = train.started + train.seconds
            ctx.timings["decode_wait_seconds"] = round(train.waited, 3)
        else:
            ended = time.monotonic()
        ctx.timings["decode_seconds"] = round(ended - self.started, 3)
        if "images" in self.decoder:
            self.decoder["images"] = dict(sum(
                (Counter(getattr(d, "decoded_by", {})) for d in self.splits.values()),
                Counter()))
        self.settled = True
        self.skipped.update(checked_skips(ctx, self.splits))

    def close(self) -> None:
        """Stop a decode still running (a run that ends early)."""
        for d in self.splits.values():
            if isinstance(d, FillingSplit):
                d.close()
        if self.cpu_decoder is not None:  # the streamed path's decoding processes
            self.cpu_decoder.close()
        if self.place == "disk" and self.work_dir is not None:
            disk_cache.remove(self.work_dir, self.rank)


def _where(ctx: RunContext, shards: dict[str, list[Any]], size: int, cache_bytes: int
           ) -> tuple[str | None, dict[str, torch.Tensor] | None]:
    """Where the decoded images go ("gpu", "host", "disk"; None: streamed), with the disk
    cache's files. Every rank decides alike: the largest rank's share decides. The cache lives
    in GPU memory when it takes under a quarter of what is free (the model and activations need
    the rest); decided before the decode, so that nvJPEG's output stays there."""
    dist = ctx.dist
    mine = int(dist.max(torch.tensor(sum(len(s) for s in shards.values()) * 3 * size ** 2)))
    if mine * dist.local_world > cache_bytes:
        files = _disk_files(ctx, shards, size, mine, cache_bytes)
        return ("disk" if files is not None else None), files
    if ctx.cuda and mine < torch.cuda.mem_get_info(ctx.device)[0] // 4:
        return "gpu", None
    return "host", None


def _place(splits: dict[str, CachedSplit | StreamedSplit], place: str | None,
           device: torch.device) -> None:
    """Decoded caches where they train from: into GPU memory (a no-op for what nvJPEG left
    there, and for a cache filling there); on CUDA from host memory (page-locked) or the
    disk's mapping, fed by a thread (host_feed.py)."""
    for d in splits.values():
        assert isinstance(d, CachedSplit)
        if place == "gpu" and not isinstance(d, FillingSplit):
            d.to(device)
        elif place in ("host", "disk") and device.type == "cuda":
            d.feed(device)


def _disk_files(ctx: RunContext, shards: dict[str, list[Any]], size: int, mine: int,
                cache_bytes: int) -> dict[str, torch.Tensor] | None:
    """Over the memory budget: each split's cache file on the scratch disk (disk_cache.py), if
    every rank's fit its disk budget and could be allocated; None (streamed) otherwise. The
    job's log says which, and why."""
    dist, work_dir = ctx.dist, ctx.req.work_dir
    budget = int(dist.min(torch.tensor(disk_cache.disk_budget(work_dir))))
    need = mine * dist.local_world
    over = (f"the decoded images ({_size(need)}) are over the memory budget "
            f"({_size(cache_bytes)}, TRAINING_AGENT_CACHE_GB)")
    files: dict[str, torch.Tensor] | None = None
    if need <= budget:
        try:
            files = {name: disk_cache.file_tensor(
                disk_cache.cache_path(work_dir, name, dist.rank), (len(items), 3, size, size))
                for name, items in shards.items()}
        except OSError as exc:
            disk_cache.remove(work_dir, dist.rank)
            ctx.say(f"the decoded cache ({_size(need)}) could not be allocated on the scratch "
                    f"disk ({exc.strerror or exc}): the images are streamed")
    else:
        ctx.say(f"{over} and the scratch disk's ({_size(budget)}, "
                "TRAINING_AGENT_DISK_CACHE_GB): they are decoded again on every pass "
                "(streamed), which is slower")
    if not int(dist.min(torch.tensor(int(files is not None)))):  # alike on every rank
        if files is not None:
            files = None
            disk_cache.remove(work_dir, dist.rank)
        return None
    ctx.say(f"{over}: they are decoded once into a file on the scratch disk and read from "
            "there on every pass")
    return files


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def checked_skips(ctx: RunContext, splits: dict[str, CachedSplit | StreamedSplit]
                  ) -> dict[str, int]:
    """Unreadable images per split over every rank, said in the job's log; DatasetInvalid when
    a class is left with no training image."""
    names = ctx.req.splits.class_names
    counts = torch.zeros(len(names) + 3, dtype=torch.int64)
    counts[: len(names)] = torch.bincount(splits["train"].labels.cpu().clamp(min=0),
                                          minlength=len(names))
    counts[len(names):] = torch.tensor([len(splits[k].skipped) for k in SPLITS])
    counts = ctx.dist.sum(counts)
    skipped = dict(zip(SPLITS, counts[len(names):].tolist(), strict=True))
    empty = [names[i] for i in range(len(names)) if counts[i] == 0]
    if empty:
        raise DatasetInvalid(
            f"class {', '.join(repr(c) for c in empty)} has no readable training images "
            f"({skipped['train']} unreadable images skipped in train/)")
    if sum(skipped.values()):
        listed = [f"{k}/{e}" for k, d in splits.items() for e in d.skipped]
        ctx.say(f"skipped {sum(skipped.values())} unreadable images (train "
                f"{skipped['train']}, val {skipped['val']}, test {skipped['test']}): "
                + "; ".join(listed[:MAX_LISTED_SKIPS]))
    return skipped
