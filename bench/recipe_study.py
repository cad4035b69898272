"""Recipe study: which part of the from-scratch recipe helps or hurts on small data.

`python bench/recipe_study.py [--families glyphs,shapes] [--epochs 12] [--variants a,b]`
trains ResNet-18 from scratch on the generated families (training_agent.testing.families) with
one recipe variant at a time, on images decoded once into memory, and prints test accuracy per
epoch and the seconds of training. Results recorded in bench/results/recipe_study.md."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision import models

from training_agent.adapters.trainers.augment import BatchTransform
from training_agent.adapters.trainers.images import decode_many
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.archive import open_dataset
from training_agent.testing.families import make_family_zip

BASE: dict[str, Any] = {  # the plain recipe (the seed's): every variant overrides some keys
    "opt": "adam", "lr": 1e-3, "wd": 0.0, "schedule": "constant", "warmup": 0, "ls": 0.0,
    "aug": "none", "norm": False, "batch": 32, "holdout": False, "upscale": 1, "zero_init": False,
    "pbn": False, "flip": False, "stem": "imagenet", "ema": 0.0, "aug_from": 0.0,
}
# the current from-scratch default (recipe.py): AdamW 1e-3, decay 0.05, one warmup epoch, held
# then cooled to zero over the last 30 %, pad-and-crop shift, 15 % held out for validation
OURS = {"opt": "adamw", "wd": 0.05, "schedule": "wsd", "warmup": "1ep", "aug": "shift",
        "norm": True, "holdout": True}
ADAMW = {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0, "norm": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "plain-pbn": {"pbn": True},
    "current-pbn": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": "1ep", "ls": 0.1,
                    "aug": "standard", "norm": True, "holdout": True, "pbn": True},
    "plain-zi": {"zero_init": True},
    "w": {"warmup": "1ep"},
    "wsd": {"warmup": "1ep", "schedule": "wsd"},
    "wsd-ls": {"warmup": "1ep", "schedule": "wsd", "ls": 0.1},
    "wsd-shift": {"warmup": "1ep", "schedule": "wsd", "aug": "shift"},
    "wsd-ls-pbn": {"warmup": "1ep", "schedule": "wsd", "ls": 0.1, "pbn": True},
    "w-shift": {"warmup": "1ep", "aug": "shift"},
    "w-x2": {"warmup": "1ep", "upscale": 2},
    "w-shift-x2": {"warmup": "1ep", "aug": "shift", "upscale": 2},
    "w-light": {"warmup": "1ep", "aug": "light", "norm": True},
    "w-ls-norm": {"warmup": "1ep", "ls": 0.1, "norm": True},
    "plain-lr05": {"lr": 5e-4},
    "plain-lr03": {"lr": 3e-4},
    "plain-sgd": {"opt": "sgd", "lr": 0.05},
    "plain-sgd2": {"opt": "sgd", "lr": 0.02},
    "plain-ls": {"ls": 0.1},
    "plain-x2": {"upscale": 2},
    "plain-lr2": {"lr": 2e-3},
    "plain-shift": {"aug": "shift"},
    "plain-b16": {"batch": 16},
    "plain-norm-zi": {"norm": True, "zero_init": True},
    "a-shift-pbn": {**ADAMW, "aug": "shift", "pbn": True},
    "a-none-pbn": {**ADAMW, "pbn": True},
    "a-shift-pbn-lr2": {**ADAMW, "aug": "shift", "pbn": True, "lr": 2e-3},
    "a-shiftflip-pbn": {**ADAMW, "aug": "shift", "flip": True, "pbn": True},
    "a-light-pbn": {**ADAMW, "aug": "light", "pbn": True},
    "a-shift-pbn-ls": {**ADAMW, "aug": "shift", "pbn": True, "ls": 0.1},
    "a-shift-pbn-w": {**ADAMW, "aug": "shift", "pbn": True, "warmup": "1ep"},
    "a-shift-pbn-const": {**ADAMW, "aug": "shift", "pbn": True, "schedule": "constant"},
    "ours": OURS,
    "ours-nohold": {**OURS, "holdout": False},
    "ours-noaug": {**OURS, "aug": "none"},
    "ours-lr2w3": {**OURS, "lr": 2e-3, "warmup": "3ep"},
    "ours-lr3w3": {**OURS, "lr": 3e-3, "warmup": "3ep"},
    "ours-sgd": {**OURS, "opt": "sgd", "lr": 0.1, "wd": 5e-4, "warmup": "3ep"},
    "ours-ema": {**OURS, "ema": 0.9},
    "ours-ema95": {**OURS, "ema": 0.95},
    "ours-ema98": {**OURS, "ema": 0.98},
    "ours-b16": {**OURS, "batch": 16},
    "ours-nomp": {**OURS, "stem": "nomp"},
    "ours-cos": {**OURS, "schedule": "cosine"},
    "ours-zi": {**OURS, "zero_init": True},
    "ours-b16-noaug": {**OURS, "batch": 16, "aug": "none"},
    "ours-b16-late": {**OURS, "batch": 16, "aug_from": 0.5},
    "ours-late": {**OURS, "aug_from": 0.5},
    "ours-b8": {**OURS, "batch": 8},
    "ours-wd0": {**OURS, "wd": 0.0},
    "ours-wd5e-4": {**OURS, "wd": 5e-4},
    "ours-ls": {**OURS, "ls": 0.1},
    "ours-lr5e-4": {**OURS, "lr": 5e-4},
    "ours-nonorm": {**OURS, "norm": False},
    "current": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": "1ep", "ls": 0.1,
                "aug": "standard", "norm": True, "holdout": True},
    "current-noaug": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": "1ep",
                      "ls": 0.1, "aug": "none", "norm": True, "holdout": True},
    "current-light": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": "1ep",
                      "ls": 0.1, "aug": "light", "norm": True, "holdout": True},
    "current-nowarm": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                       "ls": 0.1, "aug": "standard", "norm": True, "holdout": True},
    "plain-holdout": {"holdout": True},
    "plain-norm": {"norm": True},
    "plain-cosine": {"schedule": "cosine"},
    "adamw-cos-none": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                       "norm": True},
    "adamw-cos-shift": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                        "norm": True, "aug": "shift"},
    "adamw-cos-shift-lr3": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                            "norm": True, "aug": "shift", "lr": 3e-3},
    "adamw-cos-shift-b16": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                            "norm": True, "aug": "shift", "batch": 16},
    "adamw-cos-shift-x2": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                           "norm": True, "aug": "shift", "upscale": 2},
    "adamw-cos-light-x2": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                           "norm": True, "aug": "light", "upscale": 2},
    "sgd-cos-shift": {"opt": "sgd", "lr": 0.05, "wd": 5e-4, "schedule": "cosine",
                      "warmup": 0, "norm": True, "aug": "shift"},
    "adamw-cos-shift-ls": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                           "norm": True, "aug": "shift", "ls": 0.1},
    "adamw-cos-shift-zi": {"opt": "adamw", "wd": 0.05, "schedule": "cosine", "warmup": 0,
                           "norm": True, "aug": "shift", "zero_init": True},
}


def load(family: str, work: Path, size: int, data_dir: Path | None = None,
         device: str = "cpu") -> dict[str, Any]:
    zip_path = (data_dir / f"{family}.zip" if data_dir is not None
                else make_family_zip(work / f"{family}.zip", family))
    root = work / family
    splits = open_dataset(zip_path, root, 0.15, 0)
    out: dict[str, Any] = {"classes": len(splits.class_names)}
    locate = source_of(splits)  # members of the zip, read in place
    # the plain recipe trains on all of train/ (held-out val joins it back)
    for name, items in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        array, ok, _ = decode_many([locate(p) for p, _ in items], size, 2)
        out[name] = (torch.from_numpy(array).to(device),
                     torch.tensor([items[i][1] for i in ok], device=device))
    return out


def shift_aug(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop translation by up to 1/8 of the side, reflect padding (CIFAR style)."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, 3, h, w + 2 * pad)
    out = torch.gather(padded, 2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, 3, h, w)
    return torch.gather(out, 3, cols)


def run(data: dict[str, Any], v: dict[str, Any], epochs: int, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    xs, ys = data["train"]
    if not v["holdout"]:
        xs, ys = torch.cat([xs, data["val"][0]]), torch.cat([ys, data["val"][1]])
    device = xs.device
    model = models.resnet18(weights=None, num_classes=data["classes"])
    if v["stem"] == "nomp":  # no max-pool after the stem: 4x the spatial size (and compute)
        model.maxpool = torch.nn.Identity()
    model = model.to(device)
    if v["zero_init"]:
        for m in model.modules():
            if isinstance(m, models.resnet.BasicBlock):
                torch.nn.init.zeros_(m.bn2.weight)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": v["wd"]}, {"params": rest, "weight_decay": 0.0}]
    opt: Any = {"adam": lambda: torch.optim.Adam(groups, lr=v["lr"]),
                "adamw": lambda: torch.optim.AdamW(groups, lr=v["lr"]),
                "sgd": lambda: torch.optim.SGD(groups, lr=v["lr"], momentum=0.9,
                                               nesterov=True)}[v["opt"]]()
    steps = math.ceil(len(xs) / v["batch"])
    total = steps * epochs
    warm = (steps * int(v["warmup"][:-2]) if str(v["warmup"]).endswith("ep")
            else int(v["warmup"]))

    def factor(step: int) -> float:
        if step < warm:
            return 0.01 + 0.99 * step / warm
        if v["schedule"] == "constant":
            return 1.0
        if v["schedule"] == "wsd":  # stable, then the last 30 % linear to zero
            start = int(total * 0.7)
            return 1.0 if step < start else max(0.0, 1 - (step - start) / (total - start))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if not v["norm"]:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    preset = v["aug"] if v["aug"] in ("none", "light", "standard", "strong") else "none"
    tf = BatchTransform(preset, mean, std, device)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=v["ls"])
    gen = torch.Generator().manual_seed(seed)
    ema = None
    if v["ema"]:
        import copy
        ema = copy.deepcopy(model)
    size = xs.shape[-1] * v["upscale"]

    def prep(x: torch.Tensor, train: bool) -> torch.Tensor:
        if v["upscale"] != 1:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=False)
        if train and v["aug"] == "shift" and epoch_now[0] >= v["aug_from"] * epochs:
            x = shift_aug(x.float(), gen)
        if train and v["flip"]:
            x = torch.where(torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)
        return tf.train(x, gen) if train else tf.eval(x)

    curve, seconds, train = [], 0.0, []
    epoch_now = [0]
    for _epoch in range(epochs):
        epoch_now[0] = _epoch
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(xs), generator=gen).to(device)
        tl, tc = 0.0, 0
        for i in range(steps):
            idx = order[i * v["batch"]:(i + 1) * v["batch"]]
            out = model(prep(xs[idx], True))
            loss = crit(out, ys[idx])
            tl += float(loss.detach()) * len(idx)
            tc += int((out.argmax(1) == ys[idx]).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                with torch.no_grad():
                    for e, p in zip(ema.state_dict().values(), model.state_dict().values(),
                                    strict=True):
                        if e.dtype.is_floating_point:
                            e.lerp_(p, 1 - v["ema"])
                        else:
                            e.copy_(p)
        if v["pbn"]:
            recalibrate(model, lambda i: prep(xs[i:i + 64], False), len(xs))
        seconds += time.perf_counter() - t0
        judge = ema if ema is not None else model
        judge.eval()
        tx, ty = data["test"]
        with torch.no_grad():
            pred = torch.cat([judge(prep(tx[i:i + 128], False)).argmax(1)
                              for i in range(0, len(tx), 128)])
        curve.append(round(float((pred == ty).float().mean()), 3))
        train.append((round(tl / len(xs), 2), round(tc / len(xs), 2)))
    return {"curve": curve, "seconds": round(seconds, 1), "train": train}


@torch.no_grad()
def recalibrate(model: torch.nn.Module, batch: Any, n: int, limit: int = 512) -> None:
    """Precise BatchNorm: running statistics re-estimated on training images with the final
    weights (a cumulative average), so evaluation does not see stale statistics."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, min(n, limit), 64):
        model(batch(i))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


SIZES = {"glyphs": 32, "shapes": 56, "textures": 48, "scenes": 48}  # quality.py's auto sizes


def family_runs(family: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (variant, epochs, seed) run on one family; one JSON line printed per run."""
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = load(family, Path(tmp), SIZES[family], args.data, args.device)
        for entry in args.variants.split(","):  # `name` or `name@epochs`
            name, _, length = entry.partition("@")
            for epochs in (int(e) for e in (length or str(args.epochs)).split(",")):
                for seed in (int(s) for s in str(args.seeds).split(",")):
                    r = run(data, {**BASE, **VARIANTS[name]}, epochs, seed)
                    rows.append({"family": family, "variant": name, "epochs": epochs,
                                 "seed": seed, **r})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="glyphs,shapes,textures,scenes")
    ap.add_argument("--variants", default="plain,current",
                    help="names from VARIANTS, each optionally @epochs (e.g. plain@40,ours@20)")
    ap.add_argument("--epochs", default="12", help="one or more run lengths, e.g. 10,20")
    ap.add_argument("--seeds", default="0", help="e.g. 0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", type=Path, default=None,
                    help="a folder of <family>.zip made by --make-data (else generated here)")
    ap.add_argument("--make-data", type=Path, default=None,
                    help="write the families' zips (50 train / 20 test a class) and stop")
    ap.add_argument("--parallel", action="store_true", help="one process per family")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines of every run")
    args = ap.parse_args(argv)
    families = args.families.split(",")
    if args.make_data:
        for family in families:
            make_family_zip(args.make_data / f"{family}.zip", family, {"train": 50, "test": 20})
        return 0
    if args.parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(families), mp_context=ctx) as pool:
            results = list(pool.map(family_runs, families, [args] * len(families)))
    else:
        results = [family_runs(f, args) for f in families]
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for rows in results for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
