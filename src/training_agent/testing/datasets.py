"""Synthetic image-classification datasets, written as real JPEG/PNG files in a real zip.

Each class is a colour and a shape drawn at a random place and size on a noisy background, so
a small CNN can learn it in an epoch or two, and harder variants exist for benchmarks."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 40), (160, 60, 200),
           (40, 200, 200), (240, 130, 30), (120, 120, 120), (250, 250, 250), (90, 50, 20)]
SHAPES = ["ellipse", "rectangle", "triangle"]


def draw_sample(cls: int, size: int, rng: random.Random, noise: int = 30) -> Image.Image:
    """One image of class `cls`: colour picks the class, shape varies with the class too."""
    bg = tuple(rng.randint(0, noise) + 100 for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    colour = tuple(max(0, min(255, c + rng.randint(-noise, noise))) for c in PALETTE[cls % 10])
    s = rng.randint(size // 3, size // 2 + size // 4)
    x, y = rng.randint(0, size - s), rng.randint(0, size - s)
    shape = SHAPES[cls % len(SHAPES)]
    if shape == "ellipse":
        d.ellipse([x, y, x + s, y + s], fill=colour)
    elif shape == "rectangle":
        d.rectangle([x, y, x + s, y + s], fill=colour)
    else:
        d.polygon([(x, y + s), (x + s // 2, y), (x + s, y + s)], fill=colour)
    return img


def encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def make_dataset_zip(
    path: Path, classes: int = 3, per_class: dict[str, int] | None = None, size: int = 32,
    seed: int = 0, top_folder: str | None = "dataset", fmt: str = "JPEG",
    class_names: list[str] | None = None,
) -> Path:
    """Write a dataset zip: split -> images per class (default train 12, val 4, test 4)."""
    per_class = per_class if per_class is not None else {"train": 12, "val": 4, "test": 4}
    names = class_names or [f"class_{chr(97 + i)}" for i in range(classes)]
    rng = random.Random(seed)
    prefix = f"{top_folder}/" if top_folder else ""
    ext = "jpg" if fmt == "JPEG" else fmt.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for split, n in per_class.items():
            for ci, name in enumerate(names):
                for i in range(n):
                    data = encode(draw_sample(ci, size, rng), fmt)
                    zf.writestr(f"{prefix}{split}/{name}/{i:04d}.{ext}", data)
    return path
