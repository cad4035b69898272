"""`batch_size: auto` and the learning rate that goes with the batch.

`auto` resolves to:
  on CUDA   the largest power of two from 32 (16 under the data's cap) up to `MAX_AUTO_BATCH`
            (512) and the cap the data sets (below), whose training step fits comfortably: a
            short probe runs one real
            step (forward, backward, optimizer step, under the run's autocast and memory
            layout) of a copy of the model on random images at each doubling, and keeps the
            largest whose peak memory stays within `MEMORY_SHARE` of what was free on the GPU
            before the probe (the decoded cache, if it is on the GPU, is already counted). A
            step that runs out of memory ends the probe.
  elsewhere 32 (`REFERENCE_BATCH`): on a CPU a larger batch is not faster per image, and
            more steps per epoch learn more from small datasets.
An integer is that batch exactly.

The data's cap on CUDA (`data_cap`): a batch that still gives an epoch `MIN_STEPS_PER_EPOCH`
(16) optimizer steps, as a power of two, and at least `MIN_DATA_CAP` (16): 512 from 8,192
training images, 32 for 512 to 1,023, 16 below 512. A small dataset learns in steps, not
epochs: with 170 training images the memory alone would allow 128 (two steps an epoch), and
ResNet-18 from scratch then barely leaves chance in the epochs a CPU's batch of 32 needs. On a
GPU a step of 16 small images costs about what a step of 128 does, so the smaller batch is
free there. (Measured on the generated families, 50 images a class, bench/results/
recipe_study.md: batch 16 against 32 at equal epochs, 0.55 vs 0.46 on shapes, 0.24 vs 0.15 on
glyphs, 0.68 vs 0.66 on textures, 0.56 vs 0.49 on scenes after 12 epochs.) A CPU keeps 32, as
the configuration's contract says; there a step's fixed cost makes a batch of 16 up to 1.7x
dearer per image.

The learning rate follows the batch only when both are the defaults (`batch_size: auto`, `lr`
unset): the recipe's rate, set for batch 32, is scaled from 32 to the resolved batch by the
square root of the ratio (512: 4x), for every optimizer; a batch under 32 (the data's cap)
keeps the recipe's rate, the one measured there. Why: for Adam and AdamW the
square-root rule is the one that keeps the updates' noise scale (Malladi et al. 2022, "On the
SDEs and scaling rules for adaptive gradient algorithms"); linear scaling overshoots there,
since Adam's per-parameter normalisation already absorbs part of a larger batch's cleaner
gradient. For SGD the linear rule (Goyal et al. 2017) is calibrated from 0.1 at batch 256;
the recipe's SGD rate is already 0.1 at batch 32, and linear scaling would take it to 1.6 at
512, so the square root (Hoffer et al. 2017) is used there too (0.4 at 512). The scaled rate
stops at recipe.MAX_SCALED_LR (AdamW and Adam 4e-3, SGD 0.4: what batch 512 ran at before the
from-scratch rate was raised to 2e-3; so from scratch batch 128 and above get 4e-3). The recipe
warms up either way (two epochs from scratch, one fine-tuning). A rate the user set, or a batch the user set, is used
exactly as given."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from .evaluation import logits_of

REFERENCE_BATCH = 32
MAX_AUTO_BATCH = 512
MEMORY_SHARE = 0.7  # of the GPU memory free before the probe


LR_RULE = "sqrt"


MIN_STEPS_PER_EPOCH = 16
MIN_DATA_CAP = 16


def lr_for_batch(lr: float, batch: int, ceiling: float = math.inf) -> float:
    """The recipe's rate for batch 32, scaled up to `batch` by the square root of the ratio
    (a smaller batch keeps it), and not above `ceiling` (nor below `lr`)."""
    return max(lr, min(ceiling, lr * math.sqrt(max(batch, REFERENCE_BATCH) / REFERENCE_BATCH)))


def data_cap(train_images: int) -> int:
    """The largest power of two that still gives an epoch MIN_STEPS_PER_EPOCH steps, at least
    MIN_DATA_CAP (and not above the training images)."""
    per_step = max(1, train_images // MIN_STEPS_PER_EPOCH)
    cap = max(MIN_DATA_CAP, 1 << (per_step.bit_length() - 1))
    return min(cap, max(1, train_images))


def candidates(train_images: int, cap: int = MAX_AUTO_BATCH) -> list[int]:
    """The batches the probe tries, smallest first: powers of two from 32 (or the largest
    power of two not above the training images, if that is smaller) up to the cap, never
    above the training images."""
    top = min(cap, max(1, train_images))
    top = 1 << (top.bit_length() - 1)  # largest power of two <= top
    first = min(REFERENCE_BATCH, top)
    out = [first]
    while out[-1] * 2 <= top:
        out.append(out[-1] * 2)
    return out


def probe(fits: Callable[[int], bool], sizes: list[int]) -> tuple[int, list[dict[str, Any]]]:
    """The largest of `sizes` (ascending) for which `fits` holds, trying them in order and
    stopping at the first that does not fit or runs out of memory; the smallest when none
    does (training then reports the out-of-memory error itself). Returns it and the trials."""
    best, trials = sizes[0], []
    for size in sizes:
        try:
            ok = fits(size)
        except torch.OutOfMemoryError:
            ok = False
        trials.append({"batch": size, "fits": ok})
        if not ok:
            break
        best = size
    return best, trials


def step_fits(model: torch.nn.Module, make_optimizer: Callable[[torch.nn.Module], Any],
              autocast: Callable[[], Any], image_size: int, classes: int,
              device: torch.device, channels_last: bool) -> Callable[[int], bool]:
    """`fits(batch)`: one training step of a copy of `model` on random images, on CUDA;
    whether its peak memory stayed within `MEMORY_SHARE` of the memory free before."""
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    budget = MEMORY_SHARE * free
    twin = copy.deepcopy(model).train()
    optimizer = make_optimizer(twin)
    criterion = torch.nn.CrossEntropyLoss()

    def fits(batch: int) -> bool:
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.randn(batch, 3, image_size, image_size, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, classes, (batch,), device=device)
            with autocast():
                loss = criterion(logits_of(twin(x)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        finally:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        return peak <= budget

    return fits


def resolve(batch_size: int | str, device: torch.device, train_images: int, world: int,
            fits: Callable[[int], bool] | None) -> tuple[int, list[dict[str, Any]]]:
    """The global batch for `batch_size` and the probe's trials (empty without a probe).
    `fits(per_rank_batch)` is the CUDA probe's step (`step_fits`); with several processes
    each takes its share of the global batch."""
    if batch_size != "auto":
        return int(batch_size), []
    if device.type != "cuda" or fits is None:
        return REFERENCE_BATCH, []
    cap = min(MAX_AUTO_BATCH, data_cap(train_images))
    return probe(lambda b: fits(max(1, b // world)), candidates(train_images, cap))
