"""Image decoding, once per image: any file PIL reads, to an RGB uint8 square of the target size.

`load_image` is the exact preprocessing validation uses (the manifest's `input` describes it):
EXIF orientation applied, JPEG draft decoding to at least the target size, any colour mode
(L, LA, RGBA, P, CMYK, I;16, ...) converted to RGB, then a bilinear (antialiased) "squash"
resize to image_size x image_size with no crop."""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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


def load_image(path: Path | str, size: int) -> np.ndarray:
    """The image as an RGB uint8 array of shape (size, size, 3). Raises on unreadable files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncated/odd metadata: PIL's warnings are noise here
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size, size))  # DCT scaling: decode at >= size, far faster
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).copy()


def shorter_side(path: Path | str) -> int | None:
    try:
        with Image.open(path) as img:
            return min(img.size)
    except Exception:
        return None


def auto_image_size(paths: Sequence[Path], sample: int = 256) -> int:
    """The input size chosen from the data when training from scratch: the median shorter side
    of (an evenly spaced sample of up to 256) training images, clamped to [32, 224] and rounded
    down to a multiple of 8. Never above the images' typical side, so nothing is upscaled
    needlessly, and never below 32."""
    step = max(1, len(paths) // sample)
    sides = [s for s in (shorter_side(p) for p in paths[::step][:sample]) if s]
    median = int(statistics.median(sides)) if sides else MAX_AUTO_SIZE
    return max(MIN_AUTO_SIZE, min(MAX_AUTO_SIZE, median)) // 8 * 8


def unreadable(path: Path | str, exc: Exception) -> str:
    """'<class>/<file>: Type: reason' for an image that cannot be read: named inside its split
    folder (the caller adds the split), never by the server's absolute path, which PIL's
    messages carry and which would reach agent_logs and the status view."""
    path = Path(path)
    shown = "/".join(path.parts[-2:])
    reason = str(exc).replace(str(path), shown)
    return f"{shown}: {type(exc).__name__}: {reason}"


def decode_many(
    paths: Sequence[Path], size: int, threads: int
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode `paths` into one (N, 3, size, size) uint8 array (N = readable images) with a
    thread pool (PIL releases the GIL while decoding). Returns the array, the indices of the
    readable inputs, and 'class/file: reason' for each unreadable one."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    ok: list[int] = []
    bad: list[str] = []

    def one(i: int) -> str | None:
        try:
            out[i] = load_image(paths[i], size).transpose(2, 0, 1)
            return None
        except Exception as exc:
            return unreadable(paths[i], exc)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for i, err in enumerate(pool.map(one, range(len(paths)), chunksize=32)):
            if err is None:
                ok.append(i)
            else:
                bad.append(err)
    if len(ok) < len(paths):
        out = out[ok]
    return out, ok, bad
