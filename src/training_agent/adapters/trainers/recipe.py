"""The default recipe: optimizer with decay only on weights, linear warmup then cosine to zero.

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
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def make_schedule(optimizer: Any, total_steps: int, warmup_steps: int) -> Any:
    """Per-step: linear warmup from lr/100 to lr, then cosine to 0 at `total_steps`."""
    total = max(1, total_steps)
    warm = min(max(0, warmup_steps), total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return 0.01 + 0.99 * step / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
