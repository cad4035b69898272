"""Trainer benchmark, one command: `python bench/trainer_bench.py` (writes bench/results/trainer.md).

Measures, side by side in one run, on this machine's CPU (and on CUDA when a GPU is present):
  1. loader throughput: our pipeline vs the seed's (torchvision ImageFolder, per-sample
     Resize((224, 224)) + ToTensor, DataLoader batch 32, num_workers=0), same JPEG files, same
     output size, first epoch and steady state;
  2. training efficiency: our end-to-end training images/s divided by the same model's
     training step on tensors already in memory (the compute limit);
(time to accuracy is bench/quality.py's: its datasets are not told apart by colour.)
`--quick` shrinks every part (a smoke run)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from training_agent.adapters.trainers import loop
from training_agent.adapters.trainers.augment import BatchTransform
from training_agent.adapters.trainers.data import chunks_of, load_split
from training_agent.adapters.trainers.pytorch import PyTorchTrainer, cpu_count
from training_agent.adapters.trainers.recipe import make_optimizer, resolved_lr
from training_agent.adapters.trainers.registry import default_registry
from training_agent.domain.archive import build_splits, extract_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import DatasetSplits, EpochProgress, TrainRequest
from training_agent.testing.datasets import draw_sample, make_dataset_zip

RESULTS = Path(__file__).parent / "results" / "trainer.md"


def splits_from_zip(zip_path: Path, dest: Path) -> DatasetSplits:
    return build_splits(dest, extract_dataset(zip_path, dest), 0.15, 0)


def photo_folder(root: Path, classes: int, per_class: int, side: int) -> list[tuple[Path, int]]:
    """Camera-like JPEGs (side x side*4/3) in ImageFolder layout."""
    rng = random.Random(0)
    items = []
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = draw_sample(c, side, rng).resize((side * 4 // 3, side))
            path = folder / f"{i:04d}.jpg"
            img.save(path, quality=90)
            items.append((path, c))
    return items


# ---- 1. loader ------------------------------------------------------------------------------
def seed_loader(root: Path, device: torch.device):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])
    ds = datasets.ImageFolder(root=str(root), transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=0)


def timed_pass(batches: Any, device: torch.device, prepare: Any = None) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if prepare is not None:
            x = prepare(x)
        n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n, time.perf_counter() - t0


def bench_loader(work: Path, device: torch.device, quick: bool) -> list[dict[str, Any]]:
    root = work / "photos"
    items = photo_folder(root, 3, 40 if quick else 160, 480)
    threads = torch.get_num_threads()
    rows = []

    loader = seed_loader(root, device)
    seed = [timed_pass(loader, device) for _ in range(2)]
    seed_first, seed_steady = (n / dt for n, dt in seed)
    rows.append({"pipeline": "seed: ImageFolder + Resize(224) + ToTensor, 0 workers",
                 "first": seed_first, "steady": seed_steady})

    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    split = load_split(items, 224, threads, cache=True, workers=0)
    if device.type == "cuda":
        split.to(device)  # as the trainer does when the cache fits in GPU memory
    order = chunks_of(torch.randperm(len(split), generator=gen), 32)
    n, dt = timed_pass(split.batches(order), device)
    first = n / (time.perf_counter() - t0)
    steady = []
    for _ in range(5):
        n, dt = timed_pass(split.batches(chunks_of(torch.randperm(len(split), generator=gen), 32)),
                           device)
        steady.append(n / dt)
    where = "GPU" if device.type == "cuda" else "RAM"
    rows.append({"pipeline": f"ours: decode once (JPEG draft, {threads} threads) -> uint8 cache "
                             f"in {where}",
                 "first": first, "steady": statistics.median(steady)})

    tf = BatchTransform("standard", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), device)
    aug = []
    for _ in range(3):
        g = torch.Generator(device=device).manual_seed(1)
        n, dt = timed_pass(split.batches(chunks_of(torch.randperm(len(split), generator=gen), 32)),
                           device, lambda x, g=g: tf.train(x, g))
        aug.append(n / dt)
    rows.append({"pipeline": f"ours + batched augment & normalise on {device.type}",
                 "first": None, "steady": statistics.median(aug)})

    workers = max(1, threads - 1)
    streamed = load_split(items, 224, threads, cache=False, workers=workers)
    passes = [timed_pass(streamed.batches(chunks_of(torch.randperm(len(streamed),
                                                                   generator=gen), 32)), device)
              for _ in range(2)]
    rows.append({"pipeline": f"ours streamed (over memory budget): {workers} loader process(es), JPEG draft",
                 "first": passes[0][0] / passes[0][1], "steady": passes[1][0] / passes[1][1]})
    for r in rows:
        r["x_first"] = r["first"] / seed_first if r["first"] else None
        r["x_steady"] = r["steady"] / seed_steady
    return rows


# ---- 2. training efficiency -----------------------------------------------------------------
def request(work: Path, splits: DatasetSplits, name: str, **config: Any) -> TrainRequest:
    return TrainRequest(
        job_id=name, project_id=name, project_name=name, config=TrainingConfig(**config),
        splits=splits, work_dir=work / name, checkpoint_dir=work / name / "ckpt",
        out_dir=work / name / "out", dataset_url="file:///bench.zip", dataset_sha256="0" * 64)


def compute_limit(backbone: str, classes: int, size: int, batch: int, device: torch.device,
                  precision: str) -> Any:
    """A function timing one bare training step of the same model with the same optimizer
    (forward, backward, optimizer step) on tensors already in memory: no data loading, no
    augmentation, no validation. Returns the step's wall seconds."""
    torch.manual_seed(0)
    config = TrainingConfig(pretrained=False)
    model = default_registry().get("torchvision").build(backbone, classes, False, size).to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, config, resolved_lr(config))
    x = torch.randn(batch, 3, size, size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def step() -> float:
        t0 = time.perf_counter()
        with autocast:
            loss = crit(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step()  # warm
    return step


def bench_efficiency(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Ours vs the compute limit, interleaved step by step: after each of our training steps
    (timed from the end of the previous one: batch gather, augmentation, normalisation, the
    step, the scheduler, progress reporting) the progress sink runs one bare step of the same
    model and optimizer on in-memory tensors. Steps that span validation are left out. On a
    machine shared with other work, interleaving exposes both to the same load; the median
    and the best (minimum, as timeit reports) of the per-step times are both given."""
    # 256 images a class: epochs long enough (32 steps) that the per-epoch checkpoint is
    # amortised as in real datasets, rather than 8-step epochs where it dominates
    per = {"train": 32 if quick else 256, "val": 8, "test": 4}
    zip_path = make_dataset_zip(work / "eff.zip", classes=4, per_class=per, size=64, seed=1)
    splits = splits_from_zip(zip_path, work / "eff")
    epochs = 3 if quick else 5
    batch = TrainingConfig().batch_size
    precision = "bf16" if device.type == "cuda" else "fp32"
    size = 64  # image_size auto on 64 px images (checked below)
    bare = compute_limit("resnet18", 4, size, batch, device, precision)
    ours: list[float] = []
    limit: list[float] = []
    last: dict[str, Any] = {}

    def sink(p: EpochProgress) -> None:
        if not p.step:
            return
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if last.get("epoch") == p.epoch and p.step == last["step"] + 1:
            ours.append(now - last["t"])
        limit.append(bare())
        last.update(epoch=p.epoch, step=p.step, t=time.perf_counter())

    # training-epoch throughput: each epoch's training loop (TrainingRun._epoch: batches,
    # augmentation, steps, scheduler, progress) timed whole, minus the bare steps the sink ran
    # inside it; the one-time decode and the per-epoch validation are outside _epoch.
    epoch_rates: list[float] = []
    epoch_totals = [0, 0.0]
    original_epoch = loop.TrainingRun._epoch

    def timed_epoch(run: loop.TrainingRun, *args: Any) -> Any:
        bare_before, t = sum(limit), time.perf_counter()
        out = original_epoch(run, *args)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t - (sum(limit) - bare_before)
        epoch_rates.append(out[1] / seconds)
        epoch_totals[0] += out[1]
        epoch_totals[1] += seconds
        return out

    req = request(work, splits, f"eff-{device.type}", pretrained=False, epochs=epochs,
                  early_stopping_patience=None, device=str(device.type))
    loop.TrainingRun._epoch = timed_epoch
    try:
        t0 = time.perf_counter()
        result = PyTorchTrainer().train(req, sink)
        wall = time.perf_counter() - t0 - sum(limit)
    finally:
        loop.TrainingRun._epoch = original_epoch
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    assert manifest["input"]["image_size"] == size
    med = statistics.median
    n = len(splits.train)
    return {"device": device.type, "images": n, "epochs": epochs, "image_size": size,
            "batch": batch, "steps": len(ours),
            "limit_med": batch / med(limit), "limit_best": batch / min(limit),
            "ours_med": batch / med(ours), "ours_best": batch / min(ours),
            "eff_med": med(limit) / med(ours), "eff_best": min(limit) / min(ours),
            "epoch_med": med(epoch_rates), "eff_epoch_med": med(epoch_rates) / (batch / med(limit)),
            "epoch_all": epoch_totals[0] / epoch_totals[1],
            "eff_epoch_all": epoch_totals[0] / epoch_totals[1] / (batch / med(limit)),
            "epoch_rates": [round(r, 1) for r in epoch_rates],
            "whole": n * epochs / wall, "eff_whole": (n * epochs / wall) / (batch / med(limit))}


# ---- report ---------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def report(parts: list[dict[str, Any]], seconds: float) -> str:
    lines = ["# Trainer benchmark", "",
             f"`python bench/trainer_bench.py` on {platform.processor() or platform.machine()}, "
             f"{cpu_count()} CPU cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} intra-op threads; whole run {seconds:.0f} s.", ""]
    for part in parts:
        dev = part["device"]
        lines += [f"## {dev.upper()}", "", "### 1. Loader throughput (images/s, 224 px output, "
                  "batch 32, 480x640 JPEGs)", "",
                  "| pipeline | first epoch | steady state | × seed (first) | × seed (steady) |",
                  "|---|---:|---:|---:|---:|"]
        for r in part["loader"]:
            lines.append(f"| {r['pipeline']} | {_f(r['first'])} | {_f(r['steady'])} | "
                         f"{_f(r['x_first'], 1)} | {_f(r['x_steady'], 1)} |")
        e = part["efficiency"]
        lines += ["", f"### 2. Training efficiency (ResNet-18, {e['image_size']} px, batch "
                  f"{e['batch']}, {e['images']} images, {e['epochs']} epochs, {e['steps']} "
                  "interleaved step pairs)", "",
                  "| measure | images/s (median step) | ÷ limit | images/s (best step) | ÷ limit |",
                  "|---|---:|---:|---:|---:|",
                  f"| compute limit: same model and optimizer, step on in-memory tensors | "
                  f"{_f(e['limit_med'], 1)} | 1.00 | {_f(e['limit_best'], 1)} | 1.00 |",
                  f"| ours, end to end per training step (gather + augment + step + reporting) | "
                  f"{_f(e['ours_med'], 1)} | **{e['eff_med']:.3f}** | {_f(e['ours_best'], 1)} | "
                  f"**{e['eff_best']:.3f}** |",
                  f"| ours, training-epoch throughput (median epoch; all epochs pooled in the "
                  f"second pair) | {_f(e['epoch_med'], 1)} | **{e['eff_epoch_med']:.3f}** | "
                  f"{_f(e['epoch_all'], 1)} (pooled) | {e['eff_epoch_all']:.3f} |",
                  f"| ours, whole run (decode, validation, checkpoints, artifacts included) | "
                  f"{_f(e['whole'], 1)} | {e['eff_whole']:.3f} | | |",
                  "",
                  "Definitions (every ratio is ÷ the compute limit's median-step images/s, "
                  "except the best-step ratio, ÷ the limit's best step):",
                  "",
                  "- *compute limit*: batch ÷ wall time of one bare step (forward, backward, "
                  "optimizer step) of the same model and optimizer on tensors already in memory; "
                  "median and best of the bare steps run between ours.",
                  "- *per training step*: batch ÷ wall time from the end of one of our steps' "
                  "progress report to the end of the next (batch gather, augmentation, "
                  "normalisation, the step, the scheduler, reporting); steps that span "
                  "validation are left out; median and best step.",
                  "- *training-epoch throughput*: images trained in an epoch ÷ wall time of that "
                  "epoch's training loop (every step of the epoch, with its data handling and "
                  "reporting), the interleaved bare steps subtracted; the one-time decode and "
                  "the per-epoch validation, checkpoint and epoch-end report are outside it. "
                  "Median over the epochs (per epoch: "
                  f"{e['epoch_rates']}), and all epochs pooled (total images ÷ total loop time).",
                  "- *whole run*: images × epochs ÷ wall time of the whole `train()` call "
                  "(decode, every epoch, validation, checkpoints, test, artifacts), the "
                  "interleaved bare steps subtracted."]
    lines += ["Accuracy and time to accuracy are measured by `bench/quality.py` "
              "(bench/results/quality.md) on generated families whose class is not given by "
              "colour; this benchmark's generated images are told apart by colour, which any "
              f"recipe learns in an epoch. Load average at the end: {os.getloadavg()[0]:.1f}.",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(cpu_count())
    os.environ.setdefault("TRAINING_AGENT_PLUGINS", "torchvision")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    t0 = time.perf_counter()
    parts = []
    for device in devices:
        with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
            work = Path(tmp)
            part: dict[str, Any] = {"device": device.type}
            print(f"[{device}] loader ...", file=sys.stderr)
            part["loader"] = bench_loader(work, device, args.quick)
            print(f"[{device}] training efficiency ...", file=sys.stderr)
            part["efficiency"] = bench_efficiency(work, device, args.quick)
            parts.append(part)
    text = report(parts, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
