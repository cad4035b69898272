"""The from-scratch `shift` preset: whole-pixel translations, never a resampled pixel."""

from __future__ import annotations

import torch

from training_agent.adapters.trainers.augment import BatchTransform


def _offset(moved: torch.Tensor, original: torch.Tensor, reach: int) -> list[tuple[int, int]]:
    """The translations (dy, dx) under which the image's interior is found unchanged."""
    h, w = original.shape[-2:]
    inner = moved[:, reach:h - reach, reach:w - reach]
    return [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
            if torch.equal(inner, original[:, reach + dy:h - reach + dy,
                                           reach + dx:w - reach + dx])]


def test_shift_moves_each_image_by_whole_pixels_up_to_an_eighth_of_its_side():
    t = BatchTransform("shift", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    x = torch.randint(0, 256, (48, 3, 48, 40), dtype=torch.uint8)
    y = t.train(x, torch.Generator().manual_seed(0)) * 255  # mean 0, std 1: x/255
    offsets = []
    for moved, original in zip(y.round(), x.float(), strict=True):
        found = _offset(moved, original, reach=8)
        assert len(found) == 1, found  # the very pixels, moved: no blur, no zoom
        offsets.append(found[0])
    assert max(abs(dy) for dy, _ in offsets) == 6  # 1/8 of 48
    assert max(abs(dx) for _, dx in offsets) == 5  # 1/8 of 40
    assert len(set(offsets)) > 20  # each image its own translation


def test_shift_of_a_tiny_image_stays_inside_it():
    t = BatchTransform("shift", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8)
    y = t.train(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and set((y * 255).round().unique().tolist()) <= set(
        x.float().unique().tolist())
