"""`epochs: "auto"` (the default): full learning rate until validation accuracy stops improving,
never before the `min_steps` floor, then a linear cool-down to zero over a fifth of the epochs
run; the `max_epochs` ceiling plans its cool-down to end on it. The manifest and the progress
messages say how many epochs ran and why training stopped."""

from __future__ import annotations

import json

import pytest

from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.config import resolve_config

from .conftest import Recorder, make_request


def manifest_of(result):
    return json.loads(result.artifacts["manifest.json"].read_text())


def test_auto_is_the_default():
    assert resolve_config({}).epochs == "auto"


def test_plateau_waits_for_the_step_floor(tmp_path, tiny_splits):
    # 36 training images at batch 16: 3 steps an epoch, so a floor of 24 steps is 8 epochs.
    # lr=1e-9: validation accuracy never beats epoch 1's, a plateau from epoch 2 on; the
    # first cycle still runs the whole floor, cooling down over its last 30 %.
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs="auto", lr=1e-9, early_stopping_patience=1,
        min_steps=24, max_epochs=20), Recorder())
    m = result.metrics
    assert m["stop_reason"] == "plateau"
    assert result.epochs_run == 8 == m["epochs_run"]
    lrs = [h["lr"] for h in m["history"]]
    assert lrs[3] == lrs[1] > lrs[6] > lrs[7] == 0.0  # stable, then down to zero
    manifest = manifest_of(result)
    assert manifest["config"]["epochs"] == "auto"
    assert manifest["metrics"]["epochs_run"] == 8
    assert manifest["metrics"]["stop_reason"] == "plateau"


def test_without_a_floor_the_plateau_stops_sooner(tmp_path, tiny_splits):
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs="auto", lr=1e-9, early_stopping_patience=1,
        min_steps=0, max_epochs=20), sink)
    assert result.metrics["stop_reason"] == "plateau"
    assert result.epochs_run == 3  # plateau seen after epoch 2, one epoch of cool-down
    assert ("after epoch 2: validation accuracy has not improved for 1 epochs; cooling the "
            "learning rate down over 1 more epoch") in sink.messages
    assert result.metrics["history"][-1]["lr"] == 0.0


def test_still_improving_at_the_end_of_a_cycle_trains_another(tmp_path, tiny_splits,
                                                               monkeypatch):
    """Validation accuracy scripted to rise every epoch: a second cycle follows the first
    (5 epochs, no floor), cut to the 3 epochs left under the ceiling, which ends training."""
    from training_agent.adapters.trainers import epoch_loop

    script = iter([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    monkeypatch.setattr(epoch_loop, "accuracy", lambda cm: next(script))
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs="auto", early_stopping_patience=None, min_steps=0,
        max_epochs=8), sink)
    assert "after epoch 5: validation accuracy still improving; another cycle of 3 epochs" \
        in sink.messages
    lrs = [h["lr"] for h in result.metrics["history"]]
    assert lrs[4] == 0.0 < lrs[5]  # the rate rises again for the second cycle
    assert result.epochs_run == 8 and result.metrics["stop_reason"] == "max_epochs"


def test_a_second_cycle_runs_its_length_before_it_is_judged(tmp_path, tiny_splits,
                                                             monkeypatch):
    """Patience cuts the first cycle only. A second cycle starts at the full rate again, so its
    first epochs score below the first cycle's cooled-down best; it still runs its 5 epochs,
    and training stops (plateau) because it did not beat the first."""
    sink, result = scripted_run(tmp_path, tiny_splits, monkeypatch,
                                [0.2, 0.3, 0.4, 0.5, 0.6] + [0.3] * 5)
    assert "after epoch 5: validation accuracy still improving; another cycle of 5 epochs" \
        in sink.messages
    assert result.epochs_run == 10 and result.metrics["stop_reason"] == "plateau"
    assert not any("has not improved" in m for m in sink.messages)


def test_the_ceiling_ends_training_with_a_cool_down(tmp_path, tiny_splits):
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs="auto", early_stopping_patience=None, max_epochs=3),
        sink)
    m = result.metrics
    assert result.epochs_run == 3 and m["stop_reason"] == "max_epochs"
    assert m["history"][0]["lr"] > 0 and m["history"][-1]["lr"] == 0.0
    assert [e.epochs for e in sink.epochs] == [3, 3, 3]


def test_an_integer_still_means_that_many_epochs(tmp_path, tiny_splits):
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs=3, early_stopping_patience=None), Recorder())
    assert result.epochs_run == 3 and result.metrics["stop_reason"] == "epochs"


@pytest.mark.parametrize("last, cycles", [(0.9, 2), (0.35, 1)])
def test_a_cool_down_that_lifts_validation_a_lot_earns_another_cycle(tmp_path, tiny_splits,
                                                                      monkeypatch, last, cycles):
    """Validation flat at 0.3 when the first cycle's cool-down begins (no longer improving),
    then the cool-down lifts it: to 0.9, far more than two standard errors of 12 validation
    images (the net was still taking off), another cycle follows; to 0.35, within them,
    training stops there (plateau)."""
    sink, result = scripted_run(tmp_path, tiny_splits, monkeypatch,
                                [0.3, 0.3, 0.3, 0.3, last] + [0.3] * 5)
    again = [m for m in sink.messages if "another cycle" in m]
    if cycles == 2:
        assert again == ["after epoch 5: validation accuracy rose from 0.300 to 0.900 during "
                         "the cool-down; another cycle of 5 epochs"]
        assert result.epochs_run == 10
    else:
        assert again == [] and result.epochs_run == 5
    assert result.metrics["stop_reason"] == "plateau"


def scripted_run(tmp_path, tiny_splits, monkeypatch, accuracies):  # type: ignore[no-untyped-def]
    """`epochs: auto` (patience 2, a floor of 15 steps: 5-epoch cycles) with validation
    accuracy scripted epoch by epoch, then real; returns the sink and the result."""
    from training_agent.adapters.trainers import epoch_loop

    script = iter(accuracies)
    real = epoch_loop.accuracy

    def scripted(cm):  # type: ignore[no-untyped-def]
        return next(script, None) or real(cm)

    monkeypatch.setattr(epoch_loop, "accuracy", scripted)
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs="auto", early_stopping_patience=2, min_steps=15,
        max_epochs=30), sink)
    return sink, result
