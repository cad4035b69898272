"""The weight average of a from-scratch run (average.py): its horizon, its warm-up, what it
copies, and that a checkpoint carries it."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers.average import (
    MIN_HALF_LIFE,
    WeightAverage,
    half_life_steps,
)


def net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))


def fill(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_the_horizon_is_an_epoch_within_its_bounds():
    assert half_life_steps(14, 600) == 14  # a small dataset: one epoch
    assert half_life_steps(1000, 5000) == 250  # a short run: 5 % of its planned steps
    assert half_life_steps(3, 50) == MIN_HALF_LIFE


def test_the_average_moves_half_way_in_one_half_life():
    live = net()
    fill(live, 0.0)
    avg = WeightAverage(live, half_life=20)
    for _ in range(2000):  # long past the warm-up
        avg.update(live)
    fill(live, 1.0)
    for _ in range(20):
        avg.update(live)
    for p in avg.model.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.5), atol=0.01)
        assert not p.requires_grad
    assert not avg.model.training


def test_the_first_updates_do_not_keep_the_random_start():
    live = net()
    fill(live, 0.0)
    avg = WeightAverage(live, half_life=1000)
    fill(live, 1.0)
    avg.update(live)  # the decay is at most (1 + 1) / (10 + 1) on the first update
    for p in avg.model.parameters():
        assert torch.allclose(p, torch.full_like(p, 1 - 2 / 11))


def test_batchnorm_statistics_are_averaged_and_its_counter_copied():
    live = net()
    avg = WeightAverage(live, half_life=10)
    live.train()
    live(torch.randn(8, 3) + 5)  # the running mean moves, the counter counts
    avg.update(live)
    bn_live, bn_avg = live[1], avg.model[1]
    assert int(bn_avg.num_batches_tracked) == int(bn_live.num_batches_tracked) == 1
    assert 0 < float(bn_avg.running_mean.abs().sum()) < float(bn_live.running_mean.abs().sum())


def test_a_checkpoint_carries_the_average():
    live = net()
    avg = WeightAverage(live, half_life=10)
    fill(live, 2.0)
    for _ in range(5):
        avg.update(live)
    again = WeightAverage(net(), half_life=10)
    again.load_state_dict(avg.state_dict())
    assert again.updates == 5
    for a, b in zip(avg.model.state_dict().values(), again.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_a_bad_half_life_is_still_a_working_average():
    avg = WeightAverage(net(), half_life=0)  # as short as one step: follows the live model
    assert avg.decay == pytest.approx(0.5)
