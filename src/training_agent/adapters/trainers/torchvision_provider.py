"""The `torchvision` backbone provider: every torchvision classification model.

Pretrained weights come from the model's weight enum (`DEFAULT`), through torch.hub's cache
(`TORCH_HOME`). When they are not cached and cannot be downloaded the build fails with
WeightsUnavailable; it never falls back to a random init."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from training_agent.domain.errors import InvalidConfig, WeightsUnavailable

from .catalog import Entries, cached_catalog
from .registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from .weights import load_matching, offline_requested

# Architectures whose builders take the input size (their position embeddings depend on it).
_SIZED = ("vit_",)


class TorchvisionProvider:
    name = "torchvision"

    def list_backbones(self) -> list[str]:
        return list(_names())

    def catalog(self) -> Entries:
        """Each backbone and whether torchvision publishes weights for it (no import when the
        catalog is cached for this torchvision version)."""
        return list(_catalog())

    def _weights(self, backbone: str) -> Any:
        import torchvision.models as tvm

        if backbone not in _names():
            raise InvalidConfig(f"unknown torchvision backbone {backbone!r}")
        return tvm.get_model_weights(backbone).DEFAULT

    def input_spec(self, backbone: str, pretrained: bool) -> InputSpec:
        weights = self._weights(backbone)
        kw = getattr(weights.transforms, "keywords", {})
        crop = int(kw.get("crop_size", 224))
        resize = int(kw.get("resize_size", 256))
        min_size = max(weights.meta.get("min_size", (1, 1)))
        return InputSpec(
            image_size=crop, mean=tuple(kw.get("mean", IMAGENET_MEAN)),
            std=tuple(kw.get("std", IMAGENET_STD)), crop_pct=round(crop / resize, 4),
            min_size=max(32, min_size) if not backbone.startswith(_SIZED) else 32,
        )

    def build(
        self, backbone: str, num_classes: int, pretrained: bool, image_size: int | None = None
    ) -> Any:
        import torchvision.models as tvm

        weights = self._weights(backbone)
        kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
        if backbone.startswith(_SIZED) and image_size and not pretrained:
            kwargs["image_size"] = image_size
        if backbone in ("inception_v3", "googlenet"):
            kwargs["aux_logits"] = False
            kwargs["init_weights"] = not pretrained
            kwargs["transform_input"] = pretrained  # how the published weights were trained
        model = tvm.get_model(backbone, **kwargs)
        if pretrained:
            load_matching(model, self._pretrained_state(backbone, weights), num_classes)
        return model

    @staticmethod
    def _pretrained_state(backbone: str, weights: Any) -> dict[str, Any]:
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not cached.exists() and offline_requested():
            raise WeightsUnavailable(
                f"pretrained weights for torchvision {backbone} ({weights}) are not cached "
                f"(expected the file {cached}) and the machine is offline; set \"pretrained\": "
                f"false to train from scratch, or download {weights.url} to that path"
            )
        try:
            return weights.get_state_dict(progress=False, check_hash=False)
        except Exception as exc:
            raise WeightsUnavailable(
                f"pretrained weights for torchvision {backbone} ({weights}) could not be "
                f"downloaded from {weights.url} ({type(exc).__name__}: {exc}) and are not cached "
                f"(expected the file {cached}); set \"pretrained\": false to train from scratch"
            ) from None


DISTRIBUTIONS = ("torchvision",)


def compute_catalog() -> Entries:
    import torchvision.models as tvm

    return [(name, bool(list(tvm.get_model_weights(name))))
            for name in tvm.list_models(module=tvm)]


@cache
def _catalog() -> tuple[tuple[str, bool], ...]:
    return tuple(cached_catalog("torchvision", DISTRIBUTIONS, compute_catalog))


@cache
def _names() -> tuple[str, ...]:
    return tuple(name for name, _ in _catalog())


provider = TorchvisionProvider()
