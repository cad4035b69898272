"""The learner: a run's model and how it learns: the network on its device (wrapped for DDP and compiled
when asked), the batch (`auto` probed on CUDA), the learning rate, optimizer, loss, precision
and the batch transform (augmentation and normalisation). Built whole, before the first step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import batching
from .augment import BatchTransform
from .data import IGNORE
from .evaluation import confusion
from .recipe import (
    MAX_SCALED_LR,
    make_optimizer,
    resolved_augment,
    resolved_label_smoothing,
    resolved_lr,
    resolved_warmup_epochs,
)
from .registry import InputSpec
from .run_context import RunContext
from .run_data import RunData


def autocast_for(precision: str, device: torch.device) -> tuple[str, Callable[[], Any]]:
    """The resolved precision and the context a forward pass runs in."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return precision, contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return precision, lambda: torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class Batch:
    size: int  # global: over every rank
    per_rank: int
    steps: int  # per epoch
    info: dict[str, Any]  # the manifest's runtime.batch


@dataclass(frozen=True)
class Learner:
    model: torch.nn.Module
    step_model: torch.nn.Module  # what a training step calls: DDP-wrapped and/or compiled
    optimizer: Any
    scaler: torch.amp.GradScaler
    criterion: torch.nn.CrossEntropyLoss
    transform: BatchTransform
    autocast: Callable[[], Any]
    precision: str
    batch: Batch
    lr: float
    image_size: int
    spec: InputSpec
    compiled: bool

    @classmethod
    def build(cls, ctx: RunContext, model: torch.nn.Module, spec: InputSpec, image_size: int,
              data: RunData) -> Learner:
        cfg = ctx.cfg
        model = model.to(ctx.device)
        if ctx.cuda:
            model = model.to(memory_format=torch.channels_last)
        precision, autocast = autocast_for(cfg.precision, ctx.device)
        batch = resolve_batch(ctx, model, autocast, image_size, data)
        lr = resolved_lr(cfg)
        if cfg.batch_size == "auto" and cfg.lr is None:  # the recipe's rate is for batch 32
            lr = batching.lr_for_batch(lr, batch.size, MAX_SCALED_LR[cfg.optimizer])
            batch.info["lr_rule"] = batching.LR_RULE
        step_model: torch.nn.Module = model
        if ctx.dist.active:
            ids = [ctx.device.index] if ctx.cuda else None
            step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            step_model = torch.compile(step_model)  # type: ignore[assignment]
        return cls(
            model, step_model, make_optimizer(model, cfg, lr),
            torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16"),
            torch.nn.CrossEntropyLoss(label_smoothing=resolved_label_smoothing(cfg),
                                      ignore_index=IGNORE),
            BatchTransform(resolved_augment(ctx.cfg), spec.mean, spec.std, ctx.device,
                           channels_last=ctx.cuda),
            autocast, precision, batch, lr, image_size, spec, cfg.compile)

    @property
    def eval_model(self) -> torch.nn.Module:
        """What evaluation calls: the compiled model when compiling, else the plain one."""
        return self.step_model if self.compiled else self.model

    def confusion(self, ctx: RunContext, data: RunData, split: str,
                  model: torch.nn.Module | None = None) -> tuple[torch.Tensor, float]:
        """The confusion matrix of `split` over every rank, and its mean loss; `model`: another
        than the learner's (the weight average)."""
        return confusion(model or self.eval_model, data[split], self.transform.eval,
                         len(ctx.req.splits.class_names), self.batch.per_rank * 2, ctx.device,
                         self.autocast, ctx.dist.sum)

    def resolved_config(self, ctx: RunContext) -> dict[str, Any]:
        """The config as it ran: every `auto` replaced by what it became."""
        return {**ctx.cfg.model_dump(), "image_size": self.image_size, "lr": self.lr,
                "batch_size": self.batch.size, "precision": self.precision,
                "augment": self.transform.preset,
                "warmup_epochs": resolved_warmup_epochs(ctx.cfg),
                "label_smoothing": self.criterion.label_smoothing}


def resolve_batch(ctx: RunContext, model: torch.nn.Module, autocast: Callable[[], Any],
                  image_size: int, data: RunData) -> Batch:
    """`batch_size` (global) -> the batch per rank and the steps of an epoch; `auto` probes
    on CUDA (batching.py). Needs the model on its device."""
    cfg, dist = ctx.cfg, ctx.dist
    fits = None
    if cfg.batch_size == "auto" and ctx.cuda:
        fits = batching.step_fits(model, lambda m: make_optimizer(m, cfg, 1e-3), autocast,
                                  image_size, len(ctx.req.splits.class_names), ctx.device,
                                  channels_last=True)
    size, trials = batching.resolve(cfg.batch_size, ctx.device, data.total(ctx, "train"),
                                    dist.world, fits)
    size = int(dist.min(torch.tensor(size)))  # every rank the same
    per_rank = max(1, size // dist.world)
    steps = max(1, -(-data.smallest_shard // per_rank))
    return Batch(size, per_rank, steps, {"size": size, "per_rank": per_rank,
                                         "auto": cfg.batch_size == "auto", "probe": trials,
                                         "lr_rule": None})
