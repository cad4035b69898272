"""Dataset families in which the class is *not* given by colour, for quality benchmarks and tests.

Every family draws each image with a random palette, size, position and noise, so only the
structure tells the classes apart:
  shapes    outline circle / square / triangle / cross, random stroke, size, rotation and place;
            saved at mixed sizes (40-72 px) and modes (RGB JPEG, L, RGBA and P PNG)
  glyphs    the digits 0-9 in random fonts, sizes, rotations and offsets, with noise (32 px PNG)
  textures  stripes / checks / dots / rings at random scales, angles and colours (48 px)
  scenes    photo-like landscapes: mountains / city skyline / forest / sea with sun, random
            sky and ground colours, blurred and JPEG-compressed (64x48 px)
  random    the shapes images with labels drawn at random (a dataset nothing can learn)
Two more, added after the from-scratch recipe was settled, to check it on data it was not
tuned on (bench/quality.py --families counts,relations):
  counts    one to four filled blobs (discs or squares of random sizes and colours, each
            its own colour) scattered on a noisy background: the class is how many (56 px)
  relations a small filled square and a ring, the square left of / right of / above / below
            the ring at random distances (a mirror would swap left and right) (48 px)"""

from __future__ import annotations

import io
import math
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def _luma(c: tuple[int, int, int]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # PIL's RGB -> L


def _contrasting(rng: random.Random, other: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour far from `other` in RGB and in brightness, so the drawing survives a
    conversion to greyscale (mode L): red on green must not become a blank grey image."""
    while True:
        c = _colour(rng)
        if (sum(abs(a - b) for a, b in zip(c, other, strict=True)) > 200
                and abs(_luma(c) - _luma(other)) > 50):
            return c


def _noise(img: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    noise = Image.effect_noise(img.size, rng.uniform(amount / 2, amount)).convert("RGB")
    return Image.blend(img, noise, rng.uniform(0.03, 0.12))


def _canvas(rng: random.Random, size: int) -> tuple[tuple[int, int, int], Image.Image,
                                                    ImageDraw.ImageDraw]:
    """A square of one random colour to draw on: (its colour, the image, its pen)."""
    bg = _colour(rng)
    img = Image.new("RGB", (size, size), bg)
    return bg, img, ImageDraw.Draw(img)


def _rotated(points: list[tuple[float, float]], cx: float, cy: float,
             angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c)
            for x, y in points]


# ---- shapes -------------------------------------------------------------------------------
SHAPE_CLASSES = ["circle", "square", "triangle", "cross"]


def draw_shape(cls: int, rng: random.Random, size: int = 64) -> Image.Image:
    bg, img, d = _canvas(rng, size)
    ink = _contrasting(rng, bg)
    r = rng.uniform(0.22, 0.45) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    width = rng.randint(2, max(2, size // 12))
    angle = rng.uniform(0, math.pi)
    name = SHAPE_CLASSES[cls]
    if name == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=width)
    elif name == "square":
        pts = _rotated([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)],
                       cx, cy, angle)
        d.polygon(pts, outline=ink, width=width)
    elif name == "triangle":
        pts = _rotated([(cx, cy - r), (cx + r * 0.87, cy + r / 2), (cx - r * 0.87, cy + r / 2)],
                       cx, cy, angle)
        d.polygon(pts, outline=ink, width=width)
    else:
        for a in (angle, angle + math.pi / 2):
            (x0, y0), (x1, y1) = _rotated([(cx - r, cy), (cx + r, cy)], cx, cy, a)
            d.line([x0, y0, x1, y1], fill=ink, width=width + 1)
    return _noise(img, rng, 40)


# ---- glyphs -------------------------------------------------------------------------------
GLYPH_CLASSES = [str(i) for i in range(10)]


def _fonts() -> list[Path]:
    found = sorted(FONT_DIR.glob("*.ttf")) if FONT_DIR.is_dir() else []
    return [f for f in found if "ExtraLight" not in f.name]


def draw_glyph(cls: int, rng: random.Random, size: int = 32) -> Image.Image:
    bg = _colour(rng)
    ink = _contrasting(rng, bg)
    fonts = _fonts()
    points = rng.randint(int(size * 0.6), int(size * 0.9))
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    font = (ImageFont.truetype(str(rng.choice(fonts)), points) if fonts
            else ImageFont.load_default(size=points))
    layer = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(layer).text((size, size), GLYPH_CLASSES[cls], fill=255, font=font,
                               anchor="mm")
    layer = layer.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR)
    dx, dy = rng.randint(-size // 8, size // 8), rng.randint(-size // 8, size // 8)
    layer = layer.crop((size // 2 + dx, size // 2 + dy, size // 2 + dx + size,
                        size // 2 + dy + size))
    img = Image.composite(Image.new("RGB", (size, size), ink), Image.new("RGB", (size, size), bg),
                          layer)
    return _noise(img, rng, 40)


# ---- textures -----------------------------------------------------------------------------
TEXTURE_CLASSES = ["stripes", "checks", "dots", "rings"]


def draw_texture(cls: int, rng: random.Random, size: int = 48) -> Image.Image:
    a, b = _colour(rng), None
    b = _contrasting(rng, a)
    big = size * 2
    img = Image.new("RGB", (big, big), a)
    d = ImageDraw.Draw(img)
    period = rng.uniform(5, 14)
    name = TEXTURE_CLASSES[cls]
    if name == "stripes":
        k = 0.0
        while k < big * 1.5:
            d.rectangle([k - big, -big, k - big + period / 2, 2 * big], fill=b)
            k += period
        img = img.rotate(rng.uniform(0, 180), resample=Image.Resampling.BILINEAR, fillcolor=a)
    elif name == "checks":
        n = int(big / period) + 2
        for i in range(n):
            for j in range(n):
                if (i + j) % 2:
                    d.rectangle([i * period, j * period, (i + 1) * period, (j + 1) * period],
                                fill=b)
        img = img.rotate(rng.uniform(0, 90), resample=Image.Resampling.BILINEAR, fillcolor=a)
    elif name == "dots":
        n = int(big / period) + 1
        rad = period * rng.uniform(0.2, 0.35)
        for i in range(n):
            for j in range(n):
                x = i * period + rng.uniform(-1, 1)
                y = j * period + rng.uniform(-1, 1)
                d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=b)
    else:
        cx, cy = rng.uniform(0.3, 0.7) * big, rng.uniform(0.3, 0.7) * big
        r = big * 1.5
        while r > 0:
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=b, width=max(1, int(period / 3)))
            r -= period
    img = img.crop((size // 2, size // 2, size // 2 + size, size // 2 + size))
    return _noise(img, rng, 50)


# ---- scenes -------------------------------------------------------------------------------
SCENE_CLASSES = ["mountains", "city", "forest", "sea"]


def draw_scene(cls: int, rng: random.Random, size: int = 64) -> Image.Image:
    w, h = size, size * 3 // 4
    sky_top, sky_low, ground = _colour(rng), _colour(rng), _colour(rng)
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    for y in range(h):
        t = y / h
        d.line([0, y, w, y], fill=tuple(int(a + (b - a) * t)
                                        for a, b in zip(sky_top, sky_low, strict=True)))
    horizon = int(h * rng.uniform(0.55, 0.75))
    ink = _contrasting(rng, sky_low)
    name = SCENE_CLASSES[cls]
    if name == "mountains":
        x = -rng.randint(0, 10)
        while x < w:
            base = rng.randint(w // 4, w // 2)
            peak = horizon - rng.randint(h // 4, horizon - 2)
            d.polygon([(x, horizon), (x + base / 2, peak), (x + base, horizon)], fill=ink)
            x += int(base * rng.uniform(0.5, 0.9))
    elif name == "city":
        x = 0
        while x < w:
            bw = rng.randint(4, 10)
            d.rectangle([x, horizon - rng.randint(h // 8, horizon - 3), x + bw, horizon],
                        fill=ink)
            x += bw + rng.randint(0, 3)
    elif name == "forest":
        for _ in range(rng.randint(6, 12)):
            tx, th = rng.uniform(0, w), rng.uniform(h * 0.2, h * 0.45)
            d.polygon([(tx - th / 4, horizon), (tx, horizon - th), (tx + th / 4, horizon)],
                      fill=ink)
    else:
        sun = rng.uniform(4, 9)
        sx, sy = rng.uniform(sun, w - sun), rng.uniform(sun, horizon - sun)
        d.ellipse([sx - sun, sy - sun, sx + sun, sy + sun], fill=_contrasting(rng, sky_top))
    d.rectangle([0, horizon, w, h], fill=ground)
    if name == "sea":
        for y in range(horizon + 2, h, 3):
            phase, amp = rng.uniform(0, 6.3), rng.uniform(0.5, 1.5)
            d.line([(x, y + amp * math.sin(x / 3 + phase)) for x in range(0, w, 2)], fill=ink)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    return _noise(img, rng, 30)


# ---- counts -------------------------------------------------------------------------------
COUNT_CLASSES = ["one", "two", "three", "four"]


def draw_count(cls: int, rng: random.Random, size: int = 56) -> Image.Image:
    bg, img, d = _canvas(rng, size)
    placed: list[tuple[float, float, float]] = []
    while len(placed) < cls + 1:  # apart from each other, whole inside the image
        r = rng.uniform(0.06, 0.13) * size
        x, y = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
        if all(math.hypot(x - a, y - b) > r + c + 2 for a, b, c in placed):
            placed.append((x, y, r))
    for x, y, r in placed:
        box = [x - r, y - r, x + r, y + r]
        ink = _contrasting(rng, bg)
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=ink)
    return _noise(img, rng, 40)


# ---- relations ----------------------------------------------------------------------------
RELATION_CLASSES = ["left_of", "right_of", "above", "below"]


def draw_relation(cls: int, rng: random.Random, size: int = 48) -> Image.Image:
    bg, img, d = _canvas(rng, size)
    r = rng.uniform(0.08, 0.14) * size
    gap = rng.uniform(2.4, 4.0) * r  # centre to centre
    dx, dy = {"left_of": (-gap, 0), "right_of": (gap, 0), "above": (0, -gap),
              "below": (0, gap)}[RELATION_CLASSES[cls]]
    jitter = rng.uniform(-0.6, 0.6) * r  # across the relation's axis
    dx, dy = (dx, jitter) if dy == 0 else (jitter, dy)
    lo_x, hi_x = r + 1 + max(0.0, -dx), size - r - 1 - max(0.0, dx)
    lo_y, hi_y = r + 1 + max(0.0, -dy), size - r - 1 - max(0.0, dy)
    cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)  # the ring
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=_contrasting(rng, bg),
              width=max(2, size // 20))
    sx, sy = cx + dx, cy + dy
    d.rectangle([sx - r * 0.8, sy - r * 0.8, sx + r * 0.8, sy + r * 0.8],
                fill=_contrasting(rng, bg))
    return _noise(img, rng, 40)


FAMILIES: dict[str, tuple[list[str], Callable[[int, random.Random], Image.Image]]] = {
    "shapes": (SHAPE_CLASSES, draw_shape),
    "glyphs": (GLYPH_CLASSES, draw_glyph),
    "textures": (TEXTURE_CLASSES, draw_texture),
    "scenes": (SCENE_CLASSES, draw_scene),
    "random": (SHAPE_CLASSES, draw_shape),
    "counts": (COUNT_CLASSES, draw_count),
    "relations": (RELATION_CLASSES, draw_relation),
}


def _encode(img: Image.Image, family: str, rng: random.Random) -> tuple[bytes, str]:
    """Mixed files: shapes vary in size and mode; scenes are JPEG; the rest PNG."""
    buf = io.BytesIO()
    if family in ("shapes", "random"):
        side = rng.randint(40, 72)
        img = img.resize((side, side), Image.Resampling.BILINEAR)
        mode = rng.choice(["RGB", "L", "RGBA", "P"])
        if mode == "RGB":
            img.save(buf, format="JPEG", quality=rng.randint(60, 95))
            return buf.getvalue(), "jpg"
        img.convert(mode).save(buf, format="PNG")
        return buf.getvalue(), "png"
    if family == "scenes":
        img.save(buf, format="JPEG", quality=rng.randint(50, 90))
        return buf.getvalue(), "jpg"
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def make_family_zip(path: Path, family: str, per_class: dict[str, int] | None = None,
                    seed: int = 0) -> Path:
    """Write `family` as a dataset zip: split -> images per class (default train 80, test 20;
    no val/, so the trainer holds one out). `random` assigns every image a random class."""
    names, draw = FAMILIES[family]
    per_class = per_class if per_class is not None else {"train": 80, "test": 20}
    rng = random.Random(f"{family}-{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for split, n in per_class.items():
            for ci, name in enumerate(names):
                for i in range(n):
                    drawn = rng.randrange(len(names)) if family == "random" else ci
                    data, ext = _encode(draw(drawn, rng), family, rng)
                    zf.writestr(f"{family}/{split}/{name}/{i:04d}.{ext}", data)
    return path
