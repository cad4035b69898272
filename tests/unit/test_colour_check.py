"""Do colours tell the classes apart? (colour_check.py) Asked of generated images: the
families of the quality benchmark (class given by shape, colours random) and data whose class
is its colour."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from training_agent.adapters.trainers import colour_check
from training_agent.adapters.trainers.data import IGNORE
from training_agent.testing.families import FAMILIES


def _batch(draw, per_class: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The images' colour histograms (what `check` asks of) and their labels."""
    rng = random.Random(seed)
    images, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            img = draw(c, rng).convert("RGB").resize((32, 32))
            images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
            labels.append(c)
    return colour_check.histograms(torch.stack(images)), torch.tensor(labels)


def _object_of_class_colour(c: int, rng: random.Random, radius: tuple[int, int] = (6, 9),
                            any_background: bool = False) -> Image.Image:
    """A blob whose colour is the class (red, green, blue, yellow, give or take) on a grey
    background, or on one of any colour."""
    base = [(200, 40, 40), (40, 180, 40), (40, 60, 200), (210, 200, 40)][c]
    grey = rng.randint(60, 200)
    back = tuple(rng.randint(0, 255) for _ in range(3)) if any_background else (grey,) * 3
    img = Image.new("RGB", (32, 32), back)
    r = rng.randint(*radius)
    x, y = rng.randint(r, 31 - r), rng.randint(r, 31 - r)
    ImageDraw.Draw(img).ellipse([x - r, y - r, x + r, y + r],
                                fill=tuple(v + rng.randint(-30, 30) for v in base))
    return img


def test_shape_and_scene_families_with_random_colours_get_colour_invariance():
    for family in ("shapes", "scenes", "glyphs"):
        names, draw = FAMILIES[family]
        feats, labels = _batch(draw, 40, len(names))
        result = colour_check.check(feats, labels, len(names))
        assert result["colour_invariance"], (family, result)
        assert result["colour_guess"] <= result["bar"]
        assert result["images"] == 40 * len(names)


def test_data_whose_class_is_its_colour_keeps_its_colours():
    feats, labels = _batch(_object_of_class_colour, 40, 4)
    result = colour_check.check(feats, labels, 4)
    assert not result["colour_invariance"] and result["informative"]
    assert result["colour_guess"] > 0.6 and result["largest_class"] == 0.25
    assert "colours carry the class" in colour_check.sentence(result)


def test_a_small_object_of_the_class_colour_on_backgrounds_of_any_colour_is_found():
    """A tenth of the image carries the class, the rest is a random colour."""
    feats, labels = _batch(
        lambda c, rng: _object_of_class_colour(c, rng, (3, 5), any_background=True), 50, 4)
    result = colour_check.check(feats, labels, 4)
    assert result["informative"] and not result["colour_invariance"], result


def test_too_few_images_leave_the_colours_alone():
    feats, labels = _batch(FAMILIES["shapes"][1], 1, 4)
    result = colour_check.check(feats, labels, 4)
    assert not result["colour_invariance"] and result["colour_guess"] is None
    assert "too few" in colour_check.sentence(result)


def test_ranks_pool_their_counts():
    """Each rank asks its own share; the sums over every rank decide for all."""
    feats, labels = _batch(_object_of_class_colour, 20, 4)
    one = colour_check.check(feats, labels, 4)
    doubled = colour_check.check(feats, labels, 4, total=lambda t: t * 2)
    assert doubled["images"] == 2 * one["images"]
    assert doubled["colour_guess"] == one["colour_guess"]


class _Split:
    """A training split as the loop sees one: batches of (uint8 images, labels) by index."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, chunks):
        for idx in chunks:
            yield self.images[idx], self.labels[idx]


def test_the_sample_is_fixed_by_the_seed_capped_and_leaves_unreadable_images_out():
    images = torch.randint(0, 256, (1500, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(1500) % 3
    labels[::100] = IGNORE  # what a streamed split gives for a file it could not read
    a, la = colour_check.sample_of(_Split(images, labels), seed=7)
    b, lb = colour_check.sample_of(_Split(images, labels), seed=7)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert len(a) == len(la) <= colour_check.SAMPLE and (la != IGNORE).all()
    assert len(a) > colour_check.SAMPLE - 30
    assert a.shape[1] == colour_check.LEVELS ** 3 and torch.allclose(a.sum(1), torch.ones(len(a)))
    other, _ = colour_check.sample_of(_Split(images, labels), seed=8)
    assert not torch.equal(a, other)


def test_an_empty_split_is_too_few_to_tell():
    feats, labels = colour_check.sample_of(_Split(torch.zeros(0, 3, 4, 4, dtype=torch.uint8),
                                                  torch.zeros(0, dtype=torch.int64)), seed=0)
    assert colour_check.check(feats, labels, 3)["colour_guess"] is None


def test_a_histogram_is_the_share_of_pixels_in_each_colour_bin():
    img = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    img[:, 0, :, :32] = 255  # left half red, right half black
    h = colour_check.histograms(img)[0]
    red = (colour_check.LEVELS - 1) * colour_check.LEVELS ** 2
    assert h[red] == 0.5 and h[0] == 0.5 and h.sum() == 1
