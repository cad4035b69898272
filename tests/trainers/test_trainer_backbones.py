"""One contract over a sample of both providers' backbones, and the pretrained-weights rule."""

from __future__ import annotations

import pytest
import torch

from training_agent.adapters.trainers import environment
from training_agent.adapters.trainers.evaluation import logits_of
from training_agent.adapters.trainers.registry import default_registry
from training_agent.domain.errors import WeightsUnavailable

SAMPLE = [
    ("torchvision", "resnet18"), ("torchvision", "mobilenet_v3_small"),
    ("torchvision", "shufflenet_v2_x0_5"), ("torchvision", "squeezenet1_1"),
    ("torchvision", "regnet_x_400mf"), ("torchvision", "googlenet"),
    ("timm", "resnet10t"), ("timm", "test_resnet"), ("timm", "test_vit"),
    ("timm", "test_efficientnet"), ("timm", "test_convnext"), ("timm", "mobilenetv3_small_050"),
]


@pytest.mark.parametrize(("plugin", "backbone"), SAMPLE)
def test_backbone_builds_for_3_classes_and_trains_a_step(plugin, backbone):
    provider = default_registry().get(plugin)
    assert backbone in provider.list_backbones()
    spec = provider.input_spec(backbone, pretrained=False)
    assert len(spec.mean) == 3 and len(spec.std) == 3 and spec.image_size >= 32
    size = max(32, spec.min_size)
    torch.manual_seed(0)
    model = provider.build(backbone, num_classes=3, pretrained=False, image_size=size)
    model.train()
    out = logits_of(model(torch.randn(2, 3, size, size)))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(("plugin", "backbone"), [("torchvision", "resnet18"),
                                                  ("timm", "resnet10t")])
def test_pretrained_offline_without_cache_fails_clearly(plugin, backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    environment.configure(offline=True)  # HF_HUB_OFFLINE=1, as the settings hand it on
    provider = default_registry().get(plugin)
    with pytest.raises(WeightsUnavailable, match='pretrained.*false'):
        provider.build(backbone, 3, pretrained=True)


def test_pretrained_without_network_fails_clearly(tmp_path, monkeypatch):
    """No offline flag, nothing cached, no network here: still an error, never random init."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    environment.configure(offline=False)
    monkeypatch.setattr("socket.getaddrinfo", _no_network)
    with pytest.raises(WeightsUnavailable, match="could not be downloaded"):
        default_registry().get("torchvision").build("resnet18", 3, pretrained=True)


def test_pretrained_weights_from_the_cache_are_loaded(tmp_path, monkeypatch):
    """Weights in TORCH_HOME's cache load without the network; only the head is new."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    environment.configure(offline=True)
    weights = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    reference = torchvision.models.squeezenet1_1(weights=None)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    model = default_registry().get("torchvision").build("squeezenet1_1", 3, pretrained=True)
    got, want = model.state_dict(), reference.state_dict()
    assert torch.equal(got["features.0.weight"], want["features.0.weight"])
    assert got["classifier.1.weight"].shape[0] == 3


def _no_network(*args, **kwargs):
    raise OSError("network unreachable (test)")
