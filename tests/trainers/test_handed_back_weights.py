"""Which weights a job hands back: the best validation epoch's, unless the rate ended cooled
down and the last epoch is within one standard error of that best on the validation split (a
small split cannot tell them apart; the last weights are the annealed ones)."""

from __future__ import annotations

import torch

from training_agent.adapters.trainers import loop
from training_agent.adapters.trainers.distributed import DistContext
from training_agent.adapters.trainers.recipe import Schedule

LAST, BEST = 1.0, 0.0  # the weights' fill values: the model holds the last epoch's


def run_after_training(best_acc: float, last_acc: float, n_val: int,
                       cooled: bool = True) -> loop.TrainingRun:
    run = loop.TrainingRun.__new__(loop.TrainingRun)
    run.model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in run.model.parameters():
            p.fill_(LAST)
    run.best = {"accuracy": best_acc, "loss": 1.0, "epoch": 3,
                "state": {k: torch.full_like(v, BEST) for k, v in run.model.state_dict().items()}}
    run.history = [{"epoch": 3, "val_accuracy": best_acc, "val_loss": 1.0},
                   {"epoch": 8, "val_accuracy": last_acc, "val_loss": 1.2}]
    run.data = {"val": [None] * n_val}
    run.dist = DistContext()
    run.has_val = True
    run.schedule = Schedule(torch.optim.SGD(run.model.parameters(), lr=0.1), 0, 10)
    run.schedule.step_count = 10 if cooled else 5  # the cycle ends (rate 0) at step 10
    run.said = []
    run._say = run.said.append  # type: ignore[method-assign]
    run._hand_back_weights()
    return run


def held(run: loop.TrainingRun) -> float:
    return float(run.model.weight[0, 0])


def test_a_cooled_last_epoch_within_the_noise_of_the_best_is_handed_back():
    # 32 validation images: one standard error at 0.53 is 0.088; 0.50 is within it
    run = run_after_training(0.53, 0.50, 32)
    assert held(run) == LAST and run.best["epoch"] == 8
    assert "within one standard error" in run.said[0] and "epoch 8" in run.said[0]


def test_a_clearly_better_earlier_epoch_is_handed_back():
    run = run_after_training(0.80, 0.60, 32)  # 0.20 apart, the error is 0.07
    assert held(run) == BEST and run.best["epoch"] == 3 and not run.said


def test_a_larger_validation_split_tells_a_smaller_gap_apart():
    assert held(run_after_training(0.60, 0.55, 32)) == LAST    # error 0.087
    assert held(run_after_training(0.60, 0.55, 1000)) == BEST  # error 0.015


def test_training_cut_before_the_cool_down_keeps_the_best():
    run = run_after_training(0.53, 0.50, 32, cooled=False)
    assert held(run) == BEST and run.best["epoch"] == 3
