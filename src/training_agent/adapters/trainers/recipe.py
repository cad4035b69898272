"""The default recipe: optimizer with decay only on weights, and the learning-rate schedule.

Default learning rates (when `lr` is not set), for batch 32: AdamW and Adam 2e-3 from scratch,
5e-4 when fine-tuning pretrained weights; SGD (momentum 0.9, Nesterov) 0.1 and 0.02
respectively. From scratch the rate was 1e-3 until the eleventh session: with the weight
average judging and handed back (average.py), twice the rate over a two-epoch warmup took off
sooner and ended higher on three of the quality benchmark's four families, scenes level
(bench/results/recipe_study.md, seventh look). Scaled with an `auto` batch
(batching.lr_for_batch), a rate goes at most to `MAX_SCALED_LR`."""

from __future__ import annotations

import math
from typing import Any

import torch

from training_agent.domain.config import TrainingConfig

DEFAULT_LR = {"adamw": (2e-3, 5e-4), "adam": (2e-3, 5e-4), "sgd": (0.1, 0.02)}
# the highest rate the batch scaling gives: what batch 512 ran at (and was measured with on a
# GPU) while the from-scratch rate was 1e-3; beyond it nothing was measured
MAX_SCALED_LR = {"adamw": 4e-3, "adam": 4e-3, "sgd": 0.4}


def resolved_lr(config: TrainingConfig) -> float:
    if config.lr is not None:
        return config.lr
    scratch, finetune = DEFAULT_LR[config.optimizer]
    return finetune if config.pretrained else scratch


def resolved_warmup_epochs(config: TrainingConfig) -> float:
    """From scratch two epochs, one when fine-tuning: the from-scratch rate (2e-3) is twice
    the one the single epoch was chosen for (seventh look of bench/results/recipe_study.md)."""
    if config.warmup_epochs is not None:
        return config.warmup_epochs
    return 1.0 if config.pretrained else 2.0


def resolved_label_smoothing(config: TrainingConfig) -> float:
    if config.label_smoothing is not None:
        return config.label_smoothing
    return 0.1 if config.pretrained else 0.0


def resolved_augment(config: TrainingConfig) -> str:
    """The preset a run starts with. From scratch `auto` starts as `shift` and may become
    `shift-colour` before its first augmented epoch (colour_check.py, epoch_loop.py)."""
    if config.augment != "auto":
        return config.augment
    return "standard" if config.pretrained else "shift"


RAMP_SHARE = 0.5  # `augment: auto` from scratch: the shift grows over this share of the cycle


def scratch_auto(config: TrainingConfig) -> bool:
    """`augment: auto` from scratch: the shift grows (the ramp below) and the colour check
    chooses between `shift` and `shift-colour` (colour_check.py)."""
    return config.augment == "auto" and not config.pretrained


def augment_ramp_epochs(config: TrainingConfig, cycle_epochs: int) -> float:
    """Over how many epochs `shift`'s reach grows from none to full: from scratch with
    `augment: auto`, the first half of the first cycle (progressive augmentation: early
    epochs learn faster unaugmented); else 0, the preset as it is from the first step."""
    if not scratch_auto(config):
        return 0.0
    return RAMP_SHARE * cycle_epochs


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


COOL_DOWN = 0.3  # the share of a cycle spent cooling the learning rate down to zero


class Schedule:
    """The learning rate per optimizer step, as a factor of each group's base rate.

    A *cycle*: linear warmup from 1/100 over `warmup` steps, then a stable phase at the full
    rate, then a cool-down to zero over `decay_steps` from `decay_start`. Two shapes:
      cosine  the cool-down starts right after warmup (the classic warmup + cosine; kept for
              fine-tuning pretrained weights with an integer `epochs`)
      linear  warmup-stable-decay: the rate is held and falls linearly to zero over the
              cycle's last `COOL_DOWN` share (from scratch; `epochs: auto`)
    `cool_down(at, steps)` moves the cool-down earlier (validation stopped improving);
    `restart(at, length)` begins a new cycle (validation was still improving at the end of
    one). The whole plan is in `state_dict`, so a resumed run keeps it."""

    def __init__(self, optimizer: Any, warmup: int, total: int, shape: str = "linear") -> None:
        self.optimizer = optimizer
        # `initial_lr`, as torch's schedulers record it: the rate the schedule scales
        self.base = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.step_count = 0
        self.shape = shape
        self.cycle_start = 0
        self.warmup = max(0, warmup)
        self.decay_start = self.decay_steps = 0
        self.restart(0, total)

    def restart(self, at: int, length: int) -> None:
        length = max(1, length)
        self.cycle_start = at
        self.warmup = min(self.warmup, length - 1)
        if self.shape == "cosine":
            self.decay_start = at + self.warmup
        else:
            self.decay_start = at + max(self.warmup, round(length * (1 - COOL_DOWN)))
        self.decay_steps = max(1, at + length - self.decay_start)
        self._apply()

    @property
    def end(self) -> int:
        """The step at which the current cycle's rate reaches zero."""
        return self.decay_start + self.decay_steps

    def cooling(self, step: int) -> bool:
        return step >= self.decay_start

    def cool_down(self, at: int, steps: int) -> None:
        self.decay_start, self.decay_steps = at, max(1, steps)
        self.shape = "linear"

    def factor(self, step: int) -> float:
        into = step - self.cycle_start
        if into < self.warmup:
            return 0.01 + 0.99 * into / self.warmup
        if step < self.decay_start:
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
        return {k: getattr(self, k) for k in ("base", "step_count", "shape", "cycle_start",
                                              "warmup", "decay_start", "decay_steps")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._apply()
