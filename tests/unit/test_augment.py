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


def _colour_only(t: BatchTransform, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    t.params = {"colour": 1.0}  # the colour part of shift-colour alone, no translation
    return (t.train(x, torch.Generator().manual_seed(seed)) * 255).round()


def test_shift_colour_shuffles_channels_and_inverts_about_half_the_images():
    t = BatchTransform("shift-colour", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    assert t.params["translate"] == 0.125 and t.params["colour"] == 1.0
    x = torch.randint(0, 256, (600, 3, 8, 8), dtype=torch.uint8).float()
    y = _colour_only(t, x.to(torch.uint8))
    orders, inverted = [], 0
    for out, img in zip(y, x, strict=True):
        flipped = not any(torch.equal(out[0], c) for c in img)
        src = 255 - img if flipped else img
        inverted += flipped
        # each output channel is one input channel, the image's shapes untouched
        orders.append(tuple(next(j for j in range(3) if torch.equal(out[i], src[j]))
                            for i in range(3)))
    assert len(set(orders)) == 6  # all six channel orders
    assert 0.75 < sum(o != (0, 1, 2) for o in orders) / len(x) < 0.92  # 5 of 6 differ
    assert 0.4 < inverted / len(x) < 0.6  # half inverted (255 - x)


def test_shift_colour_at_strength_zero_leaves_the_colours():
    t = BatchTransform("shift-colour", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    t.strength = 0.0
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(_colour_only(t, x), x.float())
    t.use("shift")
    assert t.preset == "shift" and "colour" not in t.params
