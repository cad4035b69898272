"""Do colours tell the classes apart? Asked once, from scratch with `augment: auto`, before
the first augmented epoch: when they do not, the shift is joined by colour invariance
(augment.py's `shift-colour`: each image's channels in a random order, half of the images
inverted), which no longer lets a small network learn the colours of its few training images
in place of their shapes.

The question is put to the data, not to a model: each of up to `SAMPLE` training images (this
rank's share, a fixed random sample) becomes its colour histogram (`LEVELS` levels a channel,
joint, as shares of its pixels: where it sits in the image is gone), and each image's class is
guessed by a vote of its `K` nearest other images by those histograms (L1 distance). Colour is
*uninformative* when that guess is right no more often than the largest class's share plus
`MARGIN_ERRORS` standard errors of it: then shuffling colours takes nothing away that the
classes need. Red-vs-green apples, ripeness, flags, or any data in which colour carries the
class keep their colours (bench/results/recipe_study.md, eighth look; docs/trainer.md)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .data import IGNORE

SAMPLE = 1024  # training images asked (per rank)
LEVELS = 4  # histogram levels a channel: 64 joint bins
K = 5  # neighbours that vote
MARGIN_ERRORS = 3.0  # above the largest class's share by this many standard errors: informative
SIDE = 32  # images are subsampled to about this side first (a histogram needs few pixels)


def histograms(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> N x LEVELS**3, each row the shares of the image's pixels in each
    joint colour bin."""
    step = max(1, min(images.shape[-2:]) // SIDE)
    x = images[:, :, ::step, ::step].to(torch.int64) * LEVELS // 256  # 0..LEVELS-1 a channel
    bins = (x[:, 0] * LEVELS + x[:, 1]) * LEVELS + x[:, 2]
    flat = bins.flatten(1)
    counts = torch.zeros(len(images), LEVELS ** 3, device=images.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
    return counts / flat.shape[1]


def neighbour_votes(features: torch.Tensor, labels: torch.Tensor, classes: int) -> int:
    """How many images the vote of their K nearest others (L1) labels rightly; ties go to the
    nearest neighbour's class."""
    n = len(labels)
    if n < 2:
        return 0
    dist = torch.cdist(features, features, p=1)
    dist.fill_diagonal_(math.inf)
    k = min(K, n - 1)
    near = dist.topk(k, largest=False).indices  # nearest first
    votes = torch.zeros(n, classes, device=features.device)
    votes.scatter_add_(1, labels[near], torch.ones(n, k, device=features.device))
    votes[torch.arange(n), labels[near[:, 0]]] += 0.5  # the tie-break
    return int((votes.argmax(1) == labels).sum())


def sample_of(split: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour histograms (on the CPU) and labels of up to SAMPLE images of `split`
    (CachedSplit, FillingSplit or a streamed one), a fixed random choice, the unreadable ones
    left out; read 128 images at a time, only their histograms kept."""
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:SAMPLE]
    feats, labels = [torch.zeros(0, LEVELS ** 3)], [torch.zeros(0, dtype=torch.int64)]
    for x, y in split.batches(list(order.split(128))):
        keep = y != IGNORE
        feats.append(histograms(x[keep.to(x.device)]).cpu())
        labels.append(y[keep].cpu())
    return torch.cat(feats), torch.cat(labels)


def check(features: torch.Tensor, labels: torch.Tensor, classes: int,
          total: Any = None) -> dict[str, Any]:
    """The question above on these images' histograms. `total` sums a tensor over every rank
    (each asks its own share; all get the same answer)."""
    right = neighbour_votes(features, labels, classes)
    counts = torch.bincount(labels, minlength=classes).double()
    sums = torch.cat([torch.tensor([float(right)], dtype=torch.float64), counts])
    if total is not None:
        sums = total(sums)
    n = float(sums[1:].sum())
    if n < 2 * classes:  # too few to tell anything: leave the colours alone
        return {"images": int(n), "colour_guess": None, "largest_class": None,
                "informative": True, "colour_invariance": False}
    guess, largest = float(sums[0]) / n, float(sums[1:].max()) / n
    bar = largest + MARGIN_ERRORS * math.sqrt(largest * (1 - largest) / n)
    informative = guess > bar
    return {"images": int(n), "colour_guess": round(guess, 4), "largest_class": round(largest, 4),
            "bar": round(bar, 4), "informative": informative,
            "colour_invariance": not informative}


def sentence(result: dict[str, Any]) -> str:
    """The job log's line."""
    if result["colour_guess"] is None:
        return (f"colour check: too few training images ({result['images']}) to tell whether "
                "colours carry the class; colours kept as they are")
    said = (f"a guess of the class from colours alone was right for "
            f"{result['colour_guess']:.2f} of {result['images']} training images, the largest "
            f"class is {result['largest_class']:.2f}")
    if result["colour_invariance"]:
        return (f"colour check: colours do not tell the classes apart ({said}); training adds "
                "colour invariance (channels shuffled, half the images inverted)")
    return f"colour check: colours carry the class ({said}); colours kept as they are"
