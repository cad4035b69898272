"""Which weights a job hands back: the best validation epoch's, unless the rate ended cooled
down and the last epoch is within two standard errors of that best on the validation split (a
small split cannot tell them apart; the last weights are the annealed ones)."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers.best_weights import last_is_as_good, standard_error
from training_agent.adapters.trainers.epoch_plan import EpochPlan
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.config import resolve_config

from .conftest import Recorder, make_request


def test_a_last_epoch_within_the_noise_of_the_best_counts_as_good():
    # 32 validation images: one standard error at 0.53 is 0.088; 0.50 is within it
    assert round(standard_error(0.53, 32), 3) == 0.088
    assert last_is_as_good(0.53, 0.50, 32)


def test_a_last_epoch_between_one_and_two_errors_below_still_counts_as_good():
    # one standard error at 0.53 on 32 images is 0.088: 0.40 is 1.5 errors below, noise
    assert last_is_as_good(0.53, 0.40, 32)
    assert not last_is_as_good(0.53, 0.35, 32)  # 2.05 errors below: the best is clearly better


def test_a_clearly_better_earlier_epoch_is_not_matched():
    assert not last_is_as_good(0.80, 0.60, 32)  # 0.20 apart, two errors are 0.14


def test_a_larger_validation_split_tells_a_smaller_gap_apart():
    assert last_is_as_good(0.60, 0.55, 32)        # error 0.087
    assert not last_is_as_good(0.60, 0.55, 1000)  # error 0.015, two are 0.031
    assert not last_is_as_good(0.60, 0.60, 0)     # no validation images: no claim


def test_the_rate_is_cooled_only_once_the_cool_down_ran_to_its_end():
    """Training cut before the cool-down (early stopping, the time budget) keeps the best."""
    model = torch.nn.Linear(2, 2)
    plan = EpochPlan(resolve_config({"epochs": 2, "warmup_epochs": 0}), 5,
                     torch.optim.SGD(model.parameters(), lr=0.1), True, lambda m: None)
    for _ in range(5):
        plan.schedule.step()
    assert not plan.cooled()  # half-way
    for _ in range(5):
        plan.schedule.step()
    assert plan.cooled()


@pytest.mark.parametrize(("script", "best_epoch", "kept_last"), [
    ([0.5, 0.9, 0.8, 0.85], 4, True),   # the cooled last epoch is within the noise
    ([0.5, 0.9, 0.8, 0.75], 4, True),   # 1.7 standard errors below (12 images): still noise
    ([0.5, 0.9, 0.3, 0.4], 2, False),   # clearly worse: the best epoch's weights
])
def test_a_job_says_which_weights_it_hands_back(tmp_path, tiny_splits, monkeypatch, script,
                                                best_epoch, kept_last):
    """Through a whole run (validation accuracy scripted per epoch): the choice is the
    metrics' best_epoch and, when the last epoch wins, a progress message."""
    from training_agent.adapters.trainers import epoch_loop

    values, real = iter(script), epoch_loop.accuracy
    monkeypatch.setattr(epoch_loop, "accuracy", lambda cm: next(values, None) or real(cm))
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs=4, early_stopping_patience=None), sink)
    assert result.metrics["best_epoch"] == best_epoch
    said = [m for m in sink.messages if "keeping the last epoch's weights" in m]
    assert bool(said) == kept_last
