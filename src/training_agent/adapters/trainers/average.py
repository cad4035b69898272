"""The averaged weights of a run trained from scratch: an exponential moving average of the
model's weights and BatchNorm statistics, updated after every optimizer step. Validation, the
best-epoch copy, the final test and the handed-back model use it; the optimizer steps the
live model as before.

Why: on small data trained from scratch, the weights at a constant learning rate wander from
step to step (test accuracy moves by about 0.05 from one epoch to the next), and the
warmup-stable-decay schedule (recipe.py) holds that rate for most of a cycle. The average is
near what the cool-down reaches, sooner: measured with `bench/quality.py --without-average`
(bench/results/quality_average.md; docs/trainer.md, "Recipe and knobs"). Fine-tuning
pretrained weights keeps the live model (short runs at a decaying rate, where an average
would lag).

The horizon (`half_life_steps`): one epoch's steps, but at most `MAX_SHARE` of the first
cycle's planned steps (a short run's cool-down must show in its average) and at least
`MIN_HALF_LIFE`; the first updates weigh more (timm's warm-up: the decay is at most
(1 + n) / (10 + n)), so the average does not keep its random start."""

from __future__ import annotations

import copy
from typing import Any

import torch

MIN_HALF_LIFE = 10  # steps
MAX_SHARE = 0.05  # of the first cycle's planned steps


def half_life_steps(steps_per_epoch: int, planned_steps: int) -> float:
    return max(float(MIN_HALF_LIFE), min(float(steps_per_epoch), MAX_SHARE * planned_steps))


class WeightAverage:
    """`model`'s averaged copy (on its device, in eval mode, no gradients)."""

    def __init__(self, model: torch.nn.Module, half_life: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.half_life = half_life
        self.decay = 0.5 ** (1.0 / max(1.0, half_life))
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step's update from the live `model` (the same one every step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine, theirs = [], []
        for a, b in zip(self.model.state_dict().values(), model.state_dict().values(),
                        strict=True):
            if a.is_floating_point():
                mine.append(a)
                theirs.append(b)
            else:  # BatchNorm's batch counter
                a.copy_(b)
        torch._foreach_lerp_(mine, theirs, 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
