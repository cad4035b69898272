"""Image decoding, once per image: any file PIL reads, to an RGB uint8 square of the target size.

`load_image` is the exact preprocessing validation uses (the manifest's `input` describes it):
EXIF orientation applied, JPEG draft decoding to at least the target size, any colour mode
(L, LA, RGBA, P, CMYK, I;16, ...) converted to RGB, then a bilinear (antialiased) "squash"
resize to image_size x image_size with no crop."""

from __future__ import annotations

import hashlib
import io
import os
import re
import statistics
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .decode_pool import DecodeFailed, DecodePool
from .sources import Member, Source, path_of
from .sources import read as read_source

MIN_AUTO_SIZE, MAX_AUTO_SIZE = 32, 224


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        # composite on white: a transparent background reads as paper, not as black
        base = Image.new("RGB", img.size, (255, 255, 255))
        base.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return base
    return img.convert("RGB")


def _opened(src: Source | str | bytes) -> Image.Image:
    if isinstance(src, bytes | Member):
        return Image.open(io.BytesIO(read_source(src)))
    return Image.open(src)


@contextmanager
def quiet() -> Iterator[None]:
    """PIL's warnings (odd metadata, an image over its 89-megapixel bomb warning) are noise
    in a job's output: a large image is in the dataset report (`much_larger`), an image PIL
    refuses is skipped with PIL's reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load_image(path: Source | str | bytes, size: int) -> np.ndarray:
    """The image (a file, a member of the dataset's zip, or its encoded bytes) as an RGB
    uint8 array of shape (size, size, 3). Raises on unreadable files."""
    with quiet():
        with _opened(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # DCT scaling: decode at >= size, far faster
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).copy()


def shorter_side(path: Source | str) -> int | None:
    try:
        with quiet(), _opened(path) as img:
            return min(img.size)
    except Exception:
        return None


def auto_image_size(paths: Sequence[Source], sample: int = 256) -> int:
    """The input size chosen from the data when training from scratch: the median shorter side
    of (an evenly spaced sample of up to 256) training images, clamped to [32, 224] and rounded
    down to a multiple of 8. Never above the images' typical side, so nothing is upscaled
    needlessly, and never below 32."""
    step = max(1, len(paths) // sample)
    sides = [s for s in (shorter_side(p) for p in paths[::step][:sample]) if s]
    median = int(statistics.median(sides)) if sides else MAX_AUTO_SIZE
    return max(MIN_AUTO_SIZE, min(MAX_AUTO_SIZE, median)) // 8 * 8


def unreadable(src: Source | str, exc: Exception) -> str:
    """'<class>/<file>: Type: reason' for an image that cannot be read: named inside its split
    folder (the caller adds the split), never by the server's absolute path, which PIL's
    messages carry and which would reach agent_logs and the status view."""
    path = path_of(src)
    shown = "/".join(path.parts[-2:])
    reason = _IN_MEMORY.sub("", str(exc).replace(str(path), shown))
    if isinstance(exc, UnidentifiedImageError):  # a PNG cut short, a text file, no bytes
        reason += " (not an image format PIL reads, or not a whole image)"
    return f"{shown}: {type(exc).__name__}: {reason}"


# PIL names bytes it was given as '<_io.BytesIO object at 0x7f...>': a memory address in a
# message a person reads (and that changes from run to run)
_IN_MEMORY = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


# a file's bytes, sha256, width, height, mode, format, and why it is unreadable (or None)
Facts = tuple[int, str, int, int, str, str, str | None]


def file_facts(sources: Sequence[Source]) -> list[Facts]:
    """What the dataset check reads of each image file, without decoding its pixels: its
    size in bytes, sha256, width and height, mode and format (from the header), or why it
    cannot be read. Runs in a decoding process (decode_pool.py) or in the caller."""
    out: list[Facts] = []
    for src in sources:
        size, digest = 0, ""
        try:
            data = read_source(src)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
            with quiet(), Image.open(io.BytesIO(data)) as img:
                out.append((size, digest, img.size[0], img.size[1], img.mode,
                            img.format or "", None))
        except Exception as exc:
            out.append((size, digest, 0, 0, "", "", f"{type(exc).__name__}: {exc}"))
    return out


FACTS_CHUNK = 256  # files a decoding process reads per task of `facts_of`


def facts_of(sources: Sequence[Source], threads: int) -> list[Facts]:
    """`file_facts` of every source, spread over `threads` decoding processes (as
    `decode_many` spreads its decode): in threads, the per-file Python work held the GIL
    often enough to slow a training loop beside it (on an H200: validation and checkpoints
    8 s longer over 22,000 images). Fewer than 4 x FACTS_CHUNK files, one thread, or
    processes that cannot run (a warning says why): read in the calling thread."""
    if threads > 1 and len(sources) >= 4 * FACTS_CHUNK:
        try:
            with DecodePool(threads) as pool:
                return [f for part in pool.run(
                    [("file_facts", list(sources[s:s + FACTS_CHUNK]))
                     for s in range(0, len(sources), FACTS_CHUNK)]) for f in part]
        except (OSError, DecodeFailed) as exc:
            warnings.warn(f"reading file facts in one process: the decoding processes failed "
                          f"({exc})", RuntimeWarning, stacklevel=2)
    return file_facts(sources)


def decode_rows(out: str, shape: tuple[int, int, int, int], start: int,
                sources: Sequence[Source | bytes], size: int) -> list[str | None]:
    """Decode `sources` into rows `start`, `start + 1`, ... of the (N, 3, size, size) uint8
    array in the shared file `out` (run in a decoding process). Returns None for each decoded
    image, 'class/file: reason' (or 'bytes: reason') for each unreadable one."""
    return decode_rows_into(_shared(out, shape)[start:start + len(sources)], sources, size)


def _unreadable(src: Source | bytes, exc: Exception) -> str:
    return f"bytes: {type(exc).__name__}: {exc}" if isinstance(src, bytes) else unreadable(src, exc)


_open: dict[str, np.memmap] = {}


def _shared(path: str, shape: tuple[int, int, int, int]) -> np.memmap:
    """The shared output array, mapped once per decoding process."""
    if path not in _open:
        _open.clear()  # a previous decode's file: unmapped
        _open[path] = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    return _open[path]


CHUNK = 16  # images per task sent to a decoding process
MIN_POOLED = 64  # fewer images than this are decoded in the calling process


def _shared_folder(nbytes: int) -> str | None:
    """/dev/shm when it has room (memory, never written to disk), else the temp folder."""
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > nbytes * 1.1 + (64 << 20):
            return "/dev/shm"
    except OSError:
        pass
    return None


def decode_rows_into(out: np.ndarray, sources: Sequence[Source | bytes],
                     size: int) -> list[str | None]:
    errors: list[str | None] = []
    for i, src in enumerate(sources):
        try:
            out[i] = load_image(src, size).transpose(2, 0, 1)
            errors.append(None)
        except Exception as exc:
            errors.append(_unreadable(src, exc))
    return errors


def _decode_pooled(sources: Sequence[Source | bytes], size: int, threads: int,
                   pool: DecodePool | None) -> tuple[np.ndarray, list[str | None]]:
    n = len(sources)
    shape = (n, 3, size, size)
    fd, path = tempfile.mkstemp(prefix="training-agent-decode-", suffix=".u8",
                                dir=_shared_folder(n * 3 * size * size))
    os.close(fd)
    own = pool is None
    try:
        out = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
        pool = pool or DecodePool(threads)
        tasks = [("decode_rows", path, shape, s, list(sources[s:s + CHUNK]), size)
                 for s in range(0, n, CHUNK)]
        errors = [e for part in pool.run(tasks) for e in part]
    finally:
        os.unlink(path)  # the mapping stays valid; the name goes at once, whatever happens
        if own and pool is not None:
            pool.close()
    return out, errors


def decode_many(
    sources: Sequence[Source | bytes], size: int, threads: int,
    pool: DecodePool | None = None,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode `sources` (paths, members of the dataset's zip, or the encoded bytes of images)
    into one (N, 3, size, size) uint8 array (N = readable images). Returns the array, the
    indices of the readable inputs, and 'class/file: reason' for each unreadable one.

    With `threads` (the CPU threads the job may use) > 1 and enough images, the work is
    spread over that many processes (`pool`, else a pool made for this call; see
    decode_pool.py) that write their rows straight into one shared memory file, which is
    mapped, not copied, into the returned array. Threads do not scale here: the per-image
    Python work (open, EXIF, mode conversion, the array copies) holds the GIL; 16 threads
    reached 3.7x one core on a 16-core machine, 16 processes 18x."""
    n = len(sources)
    shape = (n, 3, size, size)
    pooled = None
    if n >= MIN_POOLED and threads > 1:
        try:
            pooled = _decode_pooled(sources, size, threads, pool)
        except (OSError, DecodeFailed) as exc:  # no processes or no shared memory here
            warnings.warn(f"decoding in one process: the decoding processes failed ({exc})",
                          RuntimeWarning, stacklevel=2)
    if pooled is not None:
        out, errors = pooled
    else:
        out = np.empty(shape, dtype=np.uint8)
        errors = decode_rows_into(out, sources, size)
    ok = [i for i, e in enumerate(errors) if e is None]
    bad = [e for e in errors if e is not None]
    if len(ok) < n:
        out = out[ok]
    return out, ok, bad
