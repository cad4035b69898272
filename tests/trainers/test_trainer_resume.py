"""Checkpoints: a job stopped after epoch 2 of 4 resumes at epoch 3 and ends with exactly the
weights of an uninterrupted run with the same seed (CPU kernels here are deterministic, so the
tolerance is zero); a changed config starts fresh."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.errors import JobCancelled

from .conftest import Recorder, make_request

RUN = {"epochs": 4, "seed": 7, "early_stopping_patience": None}


def weights(result) -> dict[str, torch.Tensor]:
    return torch.load(result.artifacts["model.pth"], weights_only=True)


def test_resumes_after_a_stop_with_the_same_final_weights(tmp_path, tiny_splits):
    whole = PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, **RUN), Recorder())

    ckpt = tmp_path / "b" / "checkpoints"
    stopping = Recorder(cancel_after_epoch=2)
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "b", tiny_splits, ckpt, **RUN), stopping)
    assert [e.epoch for e in stopping.epochs] == [1, 2]
    assert (ckpt / "last.pt").exists()

    again = Recorder()
    resumed = PyTorchTrainer().train(make_request(tmp_path / "c", tiny_splits, ckpt, **RUN),
                                     again)
    assert "resuming from checkpoint of epoch 2/4" in again.messages
    assert [e.epoch for e in again.epochs] == [3, 4]
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3, 4]
    def curve(r):
        return [(h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in r.metrics["history"]]

    assert curve(resumed) == curve(whole)
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.accuracy == whole.accuracy
    assert not (ckpt / "last.pt").exists()


def test_a_changed_config_starts_fresh(tmp_path, tiny_splits):
    ckpt = tmp_path / "checkpoints"
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path, tiny_splits, ckpt, **RUN),
                               Recorder(cancel_after_epoch=1))
    sink = Recorder()
    PyTorchTrainer().train(make_request(tmp_path, tiny_splits, ckpt, **{**RUN, "epochs": 2,
                                                                         "lr": 0.002}), sink)
    assert [e.epoch for e in sink.epochs] == [1, 2]
    assert any("another config" in m for m in sink.messages)
    assert not any("resuming" in m for m in sink.messages)
