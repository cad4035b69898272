"""Finding a backbone: the recommended few, and filtering and paging the full catalog."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .ports import BackboneInfo


@dataclass(frozen=True)
class Recommendation:
    provider: str
    name: str
    size: str  # small | medium | large: parameters and compute, roughly
    note: str


# A short list by size and speed, all with ImageNet weights; what to try first. Sizes are
# parameters and CPU/GPU cost, roughly: small trains on a laptop CPU; large wants a GPU.
RECOMMENDED = (
    Recommendation("torchvision", "mobilenet_v3_small", "small",
                   "2.5 M parameters; the fastest, for a CPU or an edge device"),
    Recommendation("torchvision", "resnet18", "small",
                   "11.7 M; the default: quick, robust, also trains well from scratch"),
    Recommendation("torchvision", "efficientnet_b0", "small",
                   "5.3 M; more accurate than resnet18 fine-tuned, a little slower"),
    Recommendation("torchvision", "resnet50", "medium",
                   "25.6 M; the standard baseline"),
    Recommendation("torchvision", "convnext_tiny", "medium",
                   "28.6 M; strong when fine-tuned; wants a GPU"),
    Recommendation("timm", "efficientnet_b3", "medium",
                   "12.2 M; accurate at 300 px inputs; wants a GPU"),
    Recommendation("torchvision", "vit_b_16", "large",
                   "86.6 M; a vision transformer, best with many images; GPU"),
    Recommendation("torchvision", "convnext_base", "large",
                   "88.6 M; the most accurate of these; GPU"),
)


def matches(info: BackboneInfo, text: str | None, provider: str | None,
            pretrained: bool) -> bool:
    """`text`: a case-insensitive part of the name, or a glob (`resnet*`, `*_b0`)."""
    if provider is not None and info.provider != provider:
        return False
    if pretrained and info.pretrained is not True:
        return False
    if not text:
        return True
    name, pattern = info.name.lower(), text.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name
