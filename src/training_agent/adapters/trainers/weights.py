"""Pretrained-weight helpers shared by providers: offline detection and head-tolerant loading."""

from __future__ import annotations

from typing import Any

from training_agent.domain.errors import WeightsUnavailable

from . import environment

# BatchNorm's step counter: not a weight (it is 0 in a fresh module and only matters with
# momentum=None); weights saved before torch 0.4.1, torchvision's older ones among them, lack it.
_COUNTERS = ("num_batches_tracked",)
_LISTED = 8


def offline_requested() -> bool:
    """True when the settings say not to touch the network (TRAINING_AGENT_OFFLINE,
    HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE: entrypoints/settings.py)."""
    return environment.current().offline


def load_matching(model: Any, state: dict[str, Any], num_classes: int) -> list[str]:
    """Load pretrained weights into a model built with a fresh `num_classes` head.

    Only the classifier may differ: a tensor whose shape differs from the pretrained one only
    because its first dimension is the class count (the head's weight and bias) keeps its fresh
    init. Any other tensor of the model that the weights lack, or that has another shape, is an
    error naming the tensors: pretrained loading never random-initialises part of a backbone.
    BatchNorm's `num_batches_tracked` counters may be absent (they are not weights). Returns
    the names of the head tensors left at their fresh init."""
    own = model.state_dict()
    head, missing, mismatched = [], [], []
    for key, tensor in own.items():
        theirs = state.get(key)
        if theirs is None:
            if not key.endswith(_COUNTERS):
                missing.append(key)
        elif tuple(theirs.shape) != tuple(tensor.shape):
            is_head = (tensor.ndim >= 1 and tensor.shape[0] == num_classes and theirs.ndim
                       == tensor.ndim and tuple(theirs.shape[1:]) == tuple(tensor.shape[1:]))
            (head if is_head else mismatched).append(key)
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing from the weights: {_names(missing)}")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape: "
                         + _names([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                                   for k in mismatched]))
        raise WeightsUnavailable(
            f"pretrained weights do not fit the model ({len(own)} tensors; "
            + "; ".join(parts) + "); refusing to random-initialise part of the backbone")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in head},
                          strict=False)
    return head


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more
