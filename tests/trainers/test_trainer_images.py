"""Odd and broken images: every colour mode becomes RGB, unreadable files are skipped and
reported, and a class left with no images is a clear dataset error."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from training_agent.adapters.trainers.images import auto_image_size, load_image
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.errors import DatasetInvalid, WeightsUnavailable
from training_agent.testing.datasets import draw_sample

from .conftest import Recorder, make_request

MODES = ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"]


def write_dataset(root, per_class: int = 8, mode_cycle=("RGB",), size: int = 40) -> None:
    rng = random.Random(0)
    for split, n in (("train", per_class), ("val", 3), ("test", 3)):
        for c in range(3):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = draw_sample(c, size, rng)
                mode = mode_cycle[i % len(mode_cycle)]
                ext = "jpg" if mode in ("RGB", "L", "CMYK") else "png"
                (img.convert(mode) if mode != "RGB" else img).save(folder / f"{i}.{ext}")


@pytest.mark.parametrize("mode", MODES)
def test_every_colour_mode_loads_as_rgb(tmp_path, mode):
    img = draw_sample(0, 40, random.Random(1)).convert(mode)
    path = tmp_path / ("a.jpg" if mode in ("L", "CMYK") else "a.png")
    img.save(path)
    arr = load_image(path, 24)
    assert arr.shape == (24, 24, 3) and arr.dtype == np.uint8


def test_transparent_pixels_read_as_white(tmp_path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png", 8) == 255).all()
    Image.new("P", (8, 8), 0).save(tmp_path / "palette.png", transparency=0)
    assert (load_image(tmp_path / "palette.png", 8) == 255).all()


def test_a_very_large_image_is_read_without_pils_bomb_warning(tmp_path, monkeypatch):
    """Over PIL's 89-megapixel warning (here lowered to 1,000 pixels) an image is read by
    the decode, the dataset check's header read, the auto size and the streamed check with
    no warning printed to the job's output; over twice that PIL refuses it: a skip, with
    PIL's reason."""
    import warnings

    from training_agent.adapters.trainers.data import _readable
    from training_agent.adapters.trainers.images import file_facts, shorter_side, unreadable

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("RGB", (40, 40), (9, 99, 199)).save(tmp_path / "big.png")  # 1,600 pixels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(tmp_path / "big.png", 8)[0, 0].tolist() == [9, 99, 199]
        assert file_facts([tmp_path / "big.png"])[0][2:4] == (40, 40)
        assert shorter_side(tmp_path / "big.png") == 40
        assert _readable(tmp_path / "big.png") is None
    assert [str(w.message) for w in caught] == []
    Image.new("RGB", (50, 50)).save(tmp_path / "bomb.png")  # 2,500: over twice the limit
    with pytest.raises(Image.DecompressionBombError) as err:
        load_image(tmp_path / "bomb.png", 8)
    assert "could be decompression bomb" in unreadable(tmp_path / "bomb.png", err.value)


def test_auto_size_is_the_median_shorter_side_clamped_and_rounded(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(100, 61), (70, 200), (500, 63), (20, 20), (1000, 900)]):
        Image.new("RGB", (w, h)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    assert auto_image_size(paths) == 56  # median of 61, 70, 63, 20, 900 is 63 -> 56
    assert auto_image_size(paths[3:4]) == 32
    assert auto_image_size(paths[4:]) == 224


def test_mixed_modes_and_unreadable_files_train_with_a_report(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, mode_cycle=("RGB", "L", "RGBA", "P", "CMYK"))
    (root / "train" / "c1" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "test" / "c2" / "empty.png").write_bytes(b"")
    zipless = splits_of_folder(root)
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(tmp_path, zipless, epochs=1), sink)
    skipped = [m for m in sink.messages if m.startswith("skipped")]
    assert len(skipped) == 1 and "broken.jpg" in skipped[0] and "empty.png" in skipped[0]
    import json

    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    assert manifest["dataset"]["skipped"] == {"train": 1, "val": 0, "test": 1}
    assert manifest["dataset"]["counts"] == {"train": 24, "val": 9, "test": 9}


def test_a_class_with_no_readable_image_is_named(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, per_class=2)
    for f in (root / "train" / "c2").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(DatasetInvalid, match="'c2' has no readable training images"):
        PyTorchTrainer().train(make_request(tmp_path, splits_of_folder(root)), Recorder())


def test_pretrained_offline_fails_the_job_before_any_training(tmp_path, tiny_splits, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from training_agent.adapters.trainers import environment

    environment.configure(offline=True)  # TRAINING_AGENT_OFFLINE=1, through the settings
    sink = Recorder()
    with pytest.raises(WeightsUnavailable, match="offline"):
        PyTorchTrainer().train(make_request(tmp_path, tiny_splits, pretrained=True), sink)
    assert sink.epochs == []


def splits_of_folder(root):
    from training_agent.domain.archive import build_splits

    found = {s: {c.name: sorted(c.iterdir()) for c in (root / s).iterdir()}
             for s in ("train", "val", "test")}
    return build_splits(root, found, 0.15, 0)
