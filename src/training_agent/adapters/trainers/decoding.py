"""Batched decoding: `decoder.decode(list of paths or encoded bytes) -> Decoded`, a uint8
tensor (N, 3, S, S) of the readable images plus what was unreadable.

Two decoders, chosen by the training device (`make_decoder`):

  PilDecoder   the reference preprocessing (`images.load_image`: JPEG draft decoding, EXIF
               orientation, any colour mode to RGB, antialiased bilinear squash resize) spread
               over decoding processes that write into shared memory (decode_pool.py).
  JpegDecoder  `torchvision.io.decode_jpeg` over lists of encoded bytes on a device: on CUDA
               that is nvJPEG, batched; then, on the device, a box average by the DCT scale
               PIL's draft mode would have decoded at and an antialiased bilinear resize.
               Everything it cannot take goes to the PilDecoder: files that are not JPEG,
               JPEGs with 4 colour components (CMYK/YCCK) or an EXIF orientation other than
               upright, and any image (batch) nvJPEG refuses.

Tolerance between the two (the JPEG path decodes at full size, box-averages, then resizes;
PIL decodes at a reduced DCT scale when the image is at least twice the target side, and the
IDCTs differ in rounding): per image, the mean absolute difference is at most `MEAN_TOLERANCE` grey levels and
99 % of the values differ by at most `P99_TOLERANCE` (of 255). The CPU run of JpegDecoder
(libjpeg-turbo) is tested against PilDecoder within it; on CUDA nvJPEG's IDCT differs from
libjpeg-turbo's by about one level more. Validation, test and the exported model's
preprocessing stay `load_image`'s; the manifest's `input.decoder` says which decoder filled
the training cache."""

from __future__ import annotations

import struct
import warnings
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .decode_pool import DecodePool
from .images import decode_many, unreadable
from .sources import Source
from .sources import read as read_source

MEAN_TOLERANCE = 2.5  # grey levels, per image
P99_TOLERANCE = 12  # grey levels, 99th percentile of |difference| per image
GPU_BATCH = 256  # images per nvJPEG call
PIL_FUNCTION = "training_agent.adapters.trainers.images:load_image"


@dataclass
class Decoded:
    images: torch.Tensor  # (N, 3, S, S) uint8, N = readable images, on the CPU (or the GPU:
    # JpegDecoder's keep_on_device)
    ok: list[int]  # indices of the readable inputs, in order
    errors: list[str]  # 'class/file: reason' for each unreadable input
    counts: dict[str, int] = field(default_factory=dict)  # images by the decoder that did them


class PilDecoder:
    """`load_image` over `workers` decoding processes (one pool for the decoder's life: use it
    as a context manager, or call `close`)."""

    name = "pil"

    def __init__(self, size: int, workers: int) -> None:
        self.size, self.workers = size, max(1, workers)
        self._pool: DecodePool | None = None

    def decode(self, sources: Sequence[Source | bytes]) -> Decoded:
        pool = None
        if self.workers > 1 and len(sources) >= 64:
            if self._pool is None:
                self._pool = DecodePool(self.workers)
            pool = self._pool
        array, ok, bad = decode_many(sources, self.size, self.workers, pool)
        return Decoded(torch.from_numpy(array), ok, bad, {self.name: len(ok)})

    def describe(self) -> dict[str, Any]:
        return {"name": "pil", "function": PIL_FUNCTION, "processes": self.workers}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> PilDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_header(data: bytes) -> tuple[int, int] | None:
    """(colour components, EXIF orientation) of a JPEG's bytes, from its markers only; None
    when the bytes are not a JPEG (or its header is cut short). Orientation 1 when absent."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    pos, orientation, n = 2, 1, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(body[6:]) or 1
        elif marker in _SOF:
            return (body[5], orientation) if len(body) >= 6 else None
        elif marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
        for k in range(count):
            entry = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag == 0x0112 and kind == 3:
                return int(struct.unpack(order + "H", entry[8:10])[0])
    except (KeyError, struct.error, IndexError):
        return None
    return None


def draft_scale(height: int, width: int, size: int) -> int:
    """The DCT scale (1, 2, 4 or 8) PIL's JPEG draft mode decodes at for a target side."""
    scale = max(1, min(width // size, height // size))
    return next(s for s in (8, 4, 2, 1) if scale >= s)


def resize_batch(images: Sequence[torch.Tensor], size: int, draft: bool = True) -> torch.Tensor:
    """Decoded (3, H, W) uint8 images on one device -> (N, 3, size, size) uint8: with `draft`,
    first a box average by the scale JPEG draft decoding would have used (what decoding at a
    reduced DCT scale approximates), then an antialiased bilinear squash resize (PIL's
    BILINEAR filter); images of one shape in one call."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8,
                      device=images[0].device if images else "cpu")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    for shape, rows in groups.items():
        x = torch.stack([images[i] for i in rows])
        scale = draft_scale(shape[1], shape[2], size) if draft else 1
        if scale > 1:
            x = F.avg_pool2d(x.float(), scale, ceil_mode=True)
        if tuple(x.shape[2:]) != (size, size):
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        out[torch.tensor(rows, device=out.device)] = x
    return out


class JpegDecoder:
    """`torchvision.io.decode_jpeg` in batches on `device` (nvJPEG on CUDA; libjpeg-turbo on
    the CPU, where it serves to test this path), resized on the device; the rest by
    `fallback`. The result is on the CPU, like PilDecoder's, or with `keep_on_device` on
    `device`: a cache that is to live in GPU memory then never makes the round trip."""

    def __init__(self, size: int, device: torch.device, fallback: PilDecoder,
                 batch: int = GPU_BATCH, keep_on_device: bool = False) -> None:
        self.size, self.device, self.fallback, self.batch = size, device, fallback, batch
        self.keep_on_device = keep_on_device
        self.name = "nvjpeg" if device.type == "cuda" else "libjpeg-turbo"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name,
                "function": f"torchvision.io.decode_jpeg(device={str(self.device)!r}) + "
                            "antialiased bilinear resize",
                "fallback": self.fallback.describe(),
                "tolerance": {"mean_abs_levels": MEAN_TOLERANCE, "p99_abs_levels": P99_TOLERANCE,
                              "versus": "images:load_image"}}

    def decode(self, sources: Sequence[Source | bytes]) -> Decoded:
        with warnings.catch_warnings():
            # torchvision 0.29 marks its image io as deprecated (torchcodec is to replace it)
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._decode(sources)

    def _decode(self, sources: Sequence[Source | bytes]) -> Decoded:
        n = len(sources)
        out = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8,
                          device=self.device if self.keep_on_device else "cpu")
        errors: list[str | None] = [None] * n
        to_fallback: list[int] = []
        pending: list[tuple[int, bytes]] = []
        done = 0
        # files are read by threads (reads release the GIL) while the device decodes the
        # batch before: the decode is asynchronous on CUDA, nothing here waits for it
        with ThreadPoolExecutor(max_workers=8) as io:
            for i, data in enumerate(io.map(_read, sources)):
                if isinstance(data, Exception):
                    errors[i] = unreadable(sources[i], data)  # type: ignore[arg-type]
                    continue
                head = jpeg_header(data)
                if head is None or head[0] not in (1, 3) or head[1] != 1:
                    to_fallback.append(i)
                    continue
                pending.append((i, data))
                if len(pending) == self.batch:
                    done += self._batch(pending, out, to_fallback)
                    pending = []
        if pending:
            done += self._batch(pending, out, to_fallback)
        counts = {self.name: done}
        if to_fallback:
            to_fallback.sort()
            rest = self.fallback.decode([sources[i] for i in to_fallback])
            if len(rest.ok):
                rows = torch.tensor([to_fallback[k] for k in rest.ok], device=out.device)
                out[rows] = rest.images.to(out.device)
            failed = set(range(len(to_fallback))) - set(rest.ok)
            for k, err in zip(sorted(failed), rest.errors, strict=True):
                errors[to_fallback[k]] = err
            counts[self.fallback.name] = len(rest.ok)
        ok = [i for i, e in enumerate(errors) if e is None]
        images = out if len(ok) == n else out[torch.tensor(ok, dtype=torch.long,
                                                           device=out.device)]
        return Decoded(images, ok, [e for e in errors if e is not None], counts)

    def _batch(self, part: list[tuple[int, bytes]], out: torch.Tensor,
               to_fallback: list[int]) -> int:
        """Decode and resize one batch into its rows of `out`; what the device refuses goes
        to `to_fallback`. Returns the images done."""
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in part]
        if self.device.type == "cuda":
            # nvJPEG writes its output on a stream of its own into memory allocated on the
            # calling stream, waiting for nothing queued there: memory just freed on this
            # stream may still be in use by kernels queued on it, so they must have run
            torch.cuda.current_stream(self.device).synchronize()
        try:
            decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self.device)
            rows, imgs = [i for i, _ in part], list(decoded)
        except RuntimeError:  # one image in the batch was refused: one by one
            rows, imgs = [], []
            for (i, _), t in zip(part, tensors, strict=True):
                try:
                    imgs.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=self.device))
                    rows.append(i)
                except RuntimeError:
                    to_fallback.append(i)
        if rows:
            out[torch.tensor(rows, device=out.device)] = resize_batch(imgs, self.size).to(
                out.device)
        return len(rows)

    def close(self) -> None:
        self.fallback.close()

    def __enter__(self) -> JpegDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(src: Source | bytes) -> bytes | Exception:
    try:
        return read_source(src)
    except (OSError, zipfile.BadZipFile) as exc:
        return exc


Decoder = PilDecoder | JpegDecoder


def make_decoder(device: torch.device, size: int, workers: int,
                 keep_on_device: bool = False) -> Decoder:
    """nvJPEG (with PIL as its fallback) when training on CUDA, else PIL over processes;
    `keep_on_device`: nvJPEG's output stays in GPU memory (the cache is to live there)."""
    pil = PilDecoder(size, workers)
    if device.type == "cuda" and torch.cuda.is_available():
        return JpegDecoder(size, device, pil, keep_on_device=keep_on_device)
    return pil
