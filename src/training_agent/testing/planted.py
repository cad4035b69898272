"""A dataset with planted problems, for the dataset check and result analysis tests and the
report benchmark: each problem is planted on purpose and named in `Planted`, so a test can ask
whether the report found it.

Scenes (photo-like landscapes, see families.py; or `colours`, learnt fast) of four classes:
  imbalance        train/sea has `train // 10` images, the others `train` (10:1)
  missing class    test/ has no 'forest' images
  test leak        `leaks` training images copied byte for byte into test/, and as many again
                   re-encoded (resized to 90 %, lighter, JPEG quality 60): near copies
  duplicates       two training images copied once more inside train/
  swapped labels   `swapped` training images of 'mountains' and 'city' filed under the other
  suspicious       two tiny (8x8), two blank (one colour) and one 200x20 image in train/,
                   and one unreadable file"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance

from .datasets import draw_sample
from .families import SCENE_CLASSES, draw_scene

# family -> class names (roles by position: 0 and 1 swap labels, 2 is missing from test/,
# 3 is the small class) and how to draw an image of class i
FAMILIES = {
    "scenes": (SCENE_CLASSES, draw_scene),  # photo-like; learnt slowly from scratch
    "colours": (["red", "green", "blue", "yellow"],  # learnt in an epoch or two
                lambda ci, rng: draw_sample(ci, 48, rng)),
}


@dataclass
class Planted:
    """What was planted, as paths inside the dataset (below its top folder)."""

    exact_leaks: list[tuple[str, str]] = field(default_factory=list)  # (train, test)
    near_leaks: list[tuple[str, str]] = field(default_factory=list)
    train_duplicates: list[tuple[str, str]] = field(default_factory=list)
    swapped: list[str] = field(default_factory=list)  # training images with a wrong label
    tiny: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    extreme_aspect: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    missing_from_test: str = ""
    small_class: str = ""
    test_images: int = 0


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_planted_zip(path: Path, train: int = 40, test: int = 10, leaks: int = 3,
                     swapped: int = 6, seed: int = 0, top: str = "planted",
                     family: str = "scenes") -> Planted:
    classes, draw_scene = FAMILIES[family]
    rng = random.Random(f"planted-{seed}")
    planted = Planted(missing_from_test=classes[2], small_class=classes[3])
    files: dict[str, bytes] = {}
    images: dict[str, Image.Image] = {}
    for ci, name in enumerate(classes):
        n = train // 10 if name == planted.small_class else train
        for i in range(n):
            img = draw_scene(ci, rng)
            rel = f"train/{name}/{i:04d}.jpg"
            files[rel], images[rel] = _jpeg(img, rng.randint(70, 92)), img
        if name == planted.missing_from_test:
            continue
        for i in range(test if name != planted.small_class else max(2, test // 2)):
            files[f"test/{name}/{i:04d}.jpg"] = _jpeg(draw_scene(ci, rng), rng.randint(70, 92))
    # swapped labels: a 'mountains' picture filed under 'city' and the other way round
    a, b = 0, 1
    for k in range(swapped):
        drawn, folder = (a, classes[b]) if k % 2 == 0 else (b, classes[a])
        rel = f"train/{folder}/swapped_{k:02d}.jpg"
        files[rel] = _jpeg(draw_scene(drawn, rng))
        planted.swapped.append(rel)
    # leaks into test/ and duplicates inside train/, taken from distinct training images
    sources = [r for r in images if r.split("/")[1] not in (planted.small_class,
                                                             planted.missing_from_test)]
    rng.shuffle(sources)
    for k in range(leaks):
        src = sources.pop()
        cls = src.split("/")[1]
        dst = f"test/{cls}/copy_{k:02d}.jpg"
        files[dst] = files[src]
        planted.exact_leaks.append((src, dst))
    for k in range(leaks):
        src = sources.pop()
        cls = src.split("/")[1]
        img = images[src]
        w, h = img.size
        near = ImageEnhance.Brightness(img.resize((w * 9 // 10, h * 9 // 10))).enhance(1.08)
        dst = f"test/{cls}/near_{k:02d}.jpg"
        files[dst] = _jpeg(near, 60)
        planted.near_leaks.append((src, dst))
    for k in range(2):
        src = sources.pop()
        dst = src.replace(".jpg", f"_again{k}.jpg")
        files[dst] = files[src]
        planted.train_duplicates.append((src, dst))
    # suspicious files in train/mountains
    for k in range(2):
        rel = f"train/{classes[0]}/tiny_{k}.jpg"
        files[rel] = _jpeg(draw_scene(a, rng).resize((8, 8)))
        planted.tiny.append(rel)
        rel = f"train/{classes[0]}/blank_{k}.png"
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (rng.randint(0, 255),) * 3).save(buf, format="PNG")
        files[rel] = buf.getvalue()
        planted.blank.append(rel)
    rel = f"train/{classes[0]}/strip.jpg"
    files[rel] = _jpeg(draw_scene(a, rng).resize((200, 20)))
    planted.extreme_aspect.append(rel)
    rel = f"train/{classes[1]}/broken.jpg"
    files[rel] = b"\xff\xd8 this is not a JPEG"
    planted.unreadable.append(rel)
    planted.test_images = sum(1 for r in files if r.startswith("test/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for rel, data in sorted(files.items()):
            zf.writestr(f"{top}/{rel}", data)
    return planted


__all__ = ["Planted", "make_planted_zip"]
