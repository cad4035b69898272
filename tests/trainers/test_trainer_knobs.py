"""Every config knob changes what it says: optimizers, augment presets, precision, early
stopping, the time budget, and the streamed (over-budget) pipeline."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers.augment import PRESETS, BatchTransform
from training_agent.adapters.trainers.pytorch import PyTorchTrainer

from .conftest import Recorder, make_request


@pytest.mark.parametrize("knobs", [
    {"optimizer": "sgd", "augment": "none"},
    {"optimizer": "adam", "augment": "light", "weight_decay": 0.0, "label_smoothing": 0.0},
    {"augment": "strong", "precision": "bf16", "warmup_epochs": 0},
    {"trainer": "timm", "backbone": "resnet10t", "batch_size": 5},
], ids=["sgd", "adam-light", "strong-bf16", "timm"])
def test_knobs_train(tmp_path, tiny_splits, knobs):
    result = PyTorchTrainer().train(make_request(tmp_path, tiny_splits, epochs=1, **knobs),
                                    Recorder())
    assert result.epochs_run == 1 and 0.0 <= result.accuracy <= 1.0
    assert result.metrics["history"][0]["train_loss"] > 0


def test_early_stopping_when_validation_stops_improving(tmp_path, tiny_splits):
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs=5, lr=1e-9, early_stopping_patience=1), sink)
    assert result.epochs_run == 2 and result.metrics["stopped_by"] == "early_stopping"
    assert result.metrics["best_epoch"] == 1
    assert any("early stopping" in m for m in sink.messages)


def test_time_budget_stops_training(tmp_path, tiny_splits):
    result = PyTorchTrainer().train(make_request(tmp_path, tiny_splits, epochs=5,
                                                 max_minutes=0.0001), Recorder())
    assert result.epochs_run == 1 and result.metrics["stopped_by"] == "max_minutes"


def test_streamed_pipeline_matches_the_cache(tmp_path, tiny_splits):
    cached = PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits), Recorder())
    streamed = PyTorchTrainer(cache_bytes=0).train(make_request(tmp_path / "b", tiny_splits),
                                                   Recorder())
    a = torch.load(cached.artifacts["model.pth"], weights_only=True)
    b = torch.load(streamed.artifacts["model.pth"], weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_splits):
    runs = [PyTorchTrainer().train(make_request(tmp_path / str(i), tiny_splits, epochs=1,
                                                seed=seed), Recorder())
            for i, seed in enumerate((3, 3, 4))]
    w = [torch.load(r.artifacts["model.pth"], weights_only=True)["fc.weight"] for r in runs]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_augment_presets_keep_shape_and_range(preset):
    t = BatchTransform(preset, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    y = t.train(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    if preset == "none":
        assert torch.allclose(y, t.eval(x))
    else:
        assert not torch.allclose(y, t.eval(x))
