"""Pretrained loading never random-initialises part of a backbone: only the classifier head
(the tensors whose first dimension is the class count) may keep its fresh init; any other
missing or reshaped tensor is an error that names it."""

from __future__ import annotations

import pytest
import torch
import torchvision

from training_agent.adapters.trainers.torchvision_provider import TorchvisionProvider
from training_agent.adapters.trainers.weights import load_matching
from training_agent.domain.errors import WeightsUnavailable


def published() -> dict[str, torch.Tensor]:
    """Stand-in for torchvision's published resnet18 weights: a 1000-class state dict."""
    torch.manual_seed(1)
    return torchvision.models.resnet18(num_classes=1000).state_dict()


def fresh(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(2)
    return torchvision.models.resnet18(num_classes=num_classes)


def test_everything_but_the_head_is_loaded():
    state, model = published(), fresh()
    head = load_matching(model, state, 3)
    assert head == ["fc.weight", "fc.bias"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert loaded["fc.weight"].shape == (3, 512)


def test_a_missing_backbone_tensor_is_an_error_naming_it():
    """One conv of 62 tensors: under the old 5% tolerance this was silently random."""
    state = published()
    del state["layer3.0.conv1.weight"]
    with pytest.raises(WeightsUnavailable, match=r"missing from the weights: layer3\.0\.conv1"):
        load_matching(fresh(), state, 3)


def test_a_reshaped_backbone_tensor_is_an_error_naming_it():
    state = published()
    state["layer1.0.bn1.weight"] = torch.ones(32)
    with pytest.raises(WeightsUnavailable, match=r"another shape: layer1\.0\.bn1\.weight"):
        load_matching(fresh(), state, 3)


def test_batchnorm_step_counters_may_be_absent():
    """Weights saved before torch 0.4.1 lack `num_batches_tracked`: a counter, not a weight."""
    state = {k: v for k, v in published().items() if not k.endswith("num_batches_tracked")}
    assert load_matching(fresh(), state, 3) == ["fc.weight", "fc.bias"]


def test_the_torchvision_provider_refuses_weights_that_do_not_fit(monkeypatch):
    state = published()
    del state["layer4.1.conv2.weight"]
    monkeypatch.setattr(TorchvisionProvider, "_pretrained_state",
                        staticmethod(lambda backbone, weights: state))
    with pytest.raises(WeightsUnavailable, match=r"layer4\.1\.conv2\.weight"):
        TorchvisionProvider().build("resnet18", 3, pretrained=True)
