"""Evaluation: the confusion matrix of a model on a split, and the metrics read from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .data import CachedSplit, StreamedSplit, chunks_of


def logits_of(output: Any) -> torch.Tensor:
    """Models with auxiliary heads return tuples or named tuples in training: the main logits."""
    if isinstance(output, torch.Tensor):
        return output
    return getattr(output, "logits", None) if hasattr(output, "logits") else output[0]


@torch.no_grad()
def confusion(
    model: torch.nn.Module, split: CachedSplit | StreamedSplit, prepare: Callable[..., Any],
    num_classes: int, batch_size: int, device: torch.device, autocast: Any,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, float]:
    """(true, predicted) counts and the mean cross-entropy; `reduce` sums across ranks."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for images, labels in split.batches(chunks_of(torch.arange(len(split)), batch_size)):
        labels = labels.to(device, non_blocking=True)
        with autocast():
            logits = logits_of(model(prepare(images))).float()
        pred = logits.argmax(dim=1)
        keep = labels >= 0
        if keep.any():
            loss += F.cross_entropy(logits[keep], labels[keep], reduction="sum").double()
        cm += torch.bincount(labels[keep] * num_classes + pred[keep],
                             minlength=num_classes * num_classes).view(num_classes, num_classes)
    model.train(was_training)
    both = torch.cat([cm.flatten().double(), loss.view(1)]).cpu()
    both = reduce(both) if reduce else both
    cm = both[:-1].round().long().view(num_classes, num_classes)
    total = int(cm.sum())
    return cm, float(both[-1]) / total if total else 0.0


def accuracy(cm: torch.Tensor) -> float:
    total = int(cm.sum())
    return float(cm.trace()) / total if total else 0.0


def per_class(cm: torch.Tensor, class_names: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(class_names):
        tp = float(cm[i, i])
        predicted, actual = float(cm[:, i].sum()), float(cm[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        out[name] = {
            "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "support": int(actual),
        }
    return out
