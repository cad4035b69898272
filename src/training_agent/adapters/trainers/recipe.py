"""The default recipe: optimizer with decay only on weights, and the learning-rate schedule.

Default learning rates (when `lr` is not set): AdamW and Adam 1e-3 from scratch, 5e-4 when
fine-tuning pretrained weights; SGD (momentum 0.9, Nesterov) 0.1 and 0.02 respectively."""

from __future__ import annotations

import math
from typing import Any

import torch

from training_agent.domain.config import TrainingConfig

DEFAULT_LR = {"adamw": (1e-3, 5e-4), "adam": (1e-3, 5e-4), "sgd": (0.1, 0.02)}


def resolved_lr(config: TrainingConfig) -> float:
    if config.lr is not None:
        return config.lr
    scratch, finetune = DEFAULT_LR[config.optimizer]
    return finetune if config.pretrained else scratch


def make_optimizer(model: torch.nn.Module, config: TrainingConfig, lr: float) -> Any:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # norms and biases: no decay
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kind, kwargs = {
        "sgd": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
        "adam": (torch.optim.Adam, {}),
        "adamw": (torch.optim.AdamW, {}),
    }[config.optimizer]
    try:
        # the fused kernels are several times faster than the per-tensor ones (CPU and CUDA)
        return kind(groups, lr=lr, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without a fused kernel
        return kind(groups, lr=lr, **kwargs)


class Schedule:
    """The learning rate per optimizer step, as a factor of each group's base rate.

    Linear warmup from 1/100 over `warmup` steps, then a *stable* phase at the full rate, then a
    *cool-down* to zero (warmup-stable-decay). With a known length (an integer `epochs`) the
    cool-down is planned at construction: cosine from the end of warmup to `total`. With
    `epochs: auto` the length is not known: the rate stays at full until `cool_down(at, steps)`
    is called (validation stopped improving, or the ceiling is near), then falls linearly to
    zero over `steps`. Its state (including the plan) is saved in checkpoints."""

    def __init__(self, optimizer: Any, warmup: int, total: int | None) -> None:
        self.optimizer = optimizer
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self.warmup = max(0, warmup)
        self.shape = "linear"
        self.decay_start: int | None = None
        self.decay_steps = 0
        if total is not None:
            total = max(1, total)
            self.warmup = min(self.warmup, total - 1)
            self.shape, self.decay_start, self.decay_steps = "cosine", self.warmup, total - self.warmup
        self._apply()

    @property
    def cooling(self) -> bool:
        return self.decay_start is not None

    def cool_down(self, at: int, steps: int) -> None:
        self.decay_start, self.decay_steps = max(at, self.warmup), max(1, steps)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return 0.01 + 0.99 * step / self.warmup
        if self.decay_start is None or step < self.decay_start:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / self.decay_steps)
        if self.shape == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - progress

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * f

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("base", "step_count", "warmup", "shape",
                                              "decay_start", "decay_steps")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._apply()
