"""The from-scratch `shift` preset: whole-pixel translations, never a resampled pixel."""

from __future__ import annotations

import torch

from training_agent.adapters.trainers.augment import BatchTransform, shift_strength


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


def test_shift_strength_scales_its_reach_and_none_leaves_the_pixels():
    t = BatchTransform("shift", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    x = torch.randint(0, 256, (32, 3, 48, 48), dtype=torch.uint8)
    t.strength = 0.0
    assert torch.equal((t.train(x, torch.Generator().manual_seed(0)) * 255).round(), x.float())
    t.strength = 0.5
    y = (t.train(x, torch.Generator().manual_seed(0)) * 255).round()
    offsets = [_offset(moved, original, reach=8)[0]
               for moved, original in zip(y, x.float(), strict=True)]
    assert max(max(abs(dy), abs(dx)) for dy, dx in offsets) == 3  # half of 1/8 of 48


def test_the_shift_grows_from_none_to_its_full_reach_over_the_ramp():
    assert [shift_strength(e, 4.0) for e in range(1, 8)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [shift_strength(e, 0.0) for e in (1, 2)] == [1.0, 1.0]  # no ramp: full from the start
