"""From scratch, validation judges and the job hands back the weight average (average.py):
the manifest says so, with its horizon."""

from __future__ import annotations

import json

import torch

from training_agent.adapters.trainers.pytorch import PyTorchTrainer

from .conftest import Recorder, make_request


def test_a_from_scratch_run_hands_back_its_weight_average(tmp_path, tiny_splits):
    result = PyTorchTrainer().train(
        make_request(tmp_path, tiny_splits, pretrained=False, epochs=2), Recorder())
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    assert manifest["runtime"]["weight_average"] == {"half_life_steps": 10.0}
    # the handed-back weights are finite and load into the backbone as before
    state = torch.load(result.artifacts["model.pth"], map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v.float()).all() for v in state.values())
