"""Pretrained-weight helpers shared by providers: offline detection and head-tolerant loading."""

from __future__ import annotations

import os
from typing import Any

from training_agent.domain.errors import WeightsUnavailable

_OFFLINE_VARS = ("TRAINING_AGENT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_requested() -> bool:
    """True when the environment says not to touch the network (read at call time)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in _OFFLINE_VARS)


def load_matching(model: Any, state: dict[str, Any]) -> None:
    """Load pretrained weights into a model built for another class count: every tensor whose
    name and shape match is loaded; only the classifier may differ."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable]
    if len(missing) > max(4, len(own) // 20):
        raise WeightsUnavailable(
            f"pretrained weights do not fit the model ({len(missing)} of {len(own)} tensors "
            f"missing, e.g. {missing[:3]})"
        )
    model.load_state_dict(usable, strict=False)
