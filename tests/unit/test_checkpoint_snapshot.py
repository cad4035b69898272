"""A checkpoint's in-memory copy (checkpoints.snapshot): a copy, never a view of the live
tensors, and written into an earlier copy's memory when one is given and fits."""

from __future__ import annotations

import torch

from training_agent.adapters.trainers.checkpoints import snapshot


def state() -> dict:
    return {"model": {"w": torch.ones(4, 3), "steps": torch.tensor(5)}, "epoch": 2,
            "history": [{"loss": 0.5}], "moments": (torch.zeros(2), torch.ones(2))}


def test_a_snapshot_is_a_copy_the_training_cannot_change():
    live = state()
    copy = snapshot(live)
    live["model"]["w"] += 1
    assert torch.equal(copy["model"]["w"], torch.ones(4, 3))
    assert copy["epoch"] == 2 and copy["history"] == [{"loss": 0.5}]


def test_an_earlier_copy_given_is_overwritten_in_place():
    live = state()
    first = snapshot(live)
    where = first["model"]["w"].data_ptr(), first["moments"][1].data_ptr()
    live["model"]["w"] += 1
    live["moments"][1].mul_(3)
    live["epoch"] = 3
    second = snapshot(live, into=first)
    assert (second["model"]["w"].data_ptr(), second["moments"][1].data_ptr()) == where
    assert torch.equal(second["model"]["w"], torch.full((4, 3), 2.0))
    assert torch.equal(second["moments"][1], torch.full((2,), 3.0))
    assert second["epoch"] == 3
    live["model"]["w"] += 1  # still a copy, not a view
    assert torch.equal(second["model"]["w"], torch.full((4, 3), 2.0))


def test_a_copy_that_does_not_fit_is_not_reused():
    live = state()
    first = snapshot(live)
    live["model"]["w"] = torch.ones(5, 3)  # another shape
    live["model"]["steps"] = torch.tensor(5.0)  # another dtype
    second = snapshot(live, into=first)
    assert second["model"]["w"].shape == (5, 3)
    assert second["model"]["w"].data_ptr() != first["model"]["w"].data_ptr()
    assert second["model"]["steps"].dtype == torch.float32
    assert torch.equal(first["model"]["w"], torch.ones(4, 3))  # left as it was
