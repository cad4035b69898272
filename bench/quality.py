"""Quality benchmark, one command: `python bench/quality.py` (writes bench/results/quality.md).

For each generated dataset family in which the class is *not* given by colour (outline shapes,
glyphs in random fonts, textures, photo-like scenes: training_agent.testing.families), small
(50 training and 20 test images a class by default, no val/), trained from scratch on this machine:
  - ours: the real trainer with its defaults (`{"pretrained": false}` only: epochs auto, image
    size auto, the from-scratch recipe); test accuracy measured after every epoch by the
    benchmark (its own evaluation is taken out of the clock);
  - plain: the seed document's recipe at the same image size as ours (ImageFolder,
    Resize((size, size)) + ToTensor, batch 32, shuffle, ResNet-18, Adam 1e-3, cross-entropy),
    test accuracy after every epoch, for `--plain-epochs` epochs or as many as ours ran.
Both with each of `--seeds` (default 0,1); the table compares the mean curves: both accuracies
at equal epochs, the plain recipe's best, and the time each takes to reach it. `--jobs` (default
2) runs that many at a time, each in its own process with one thread (both recipes alike, so
their seconds compare). `--quick` runs one small family with one seed, a smoke test."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torchvision.models  # noqa: F401  (both recipes use it: imported before either clock)

from training_agent.adapters.trainers import loop
from training_agent.adapters.trainers.evaluation import accuracy
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.archive import open_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import DatasetSplits, EpochProgress, TrainRequest
from training_agent.testing.families import FAMILIES, make_family_zip

RESULTS = Path(__file__).parent / "results" / "quality.md"
FAMILY_NAMES = ["shapes", "glyphs", "textures", "scenes"]


class Clock:
    """Wall seconds since start, with the benchmark's own test evaluations taken out."""

    def __init__(self) -> None:
        self.t0, self.paused_for = time.perf_counter(), 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0 - self.paused_for

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.paused_for += time.perf_counter() - t


def family_data(family: str, work: Path, per_class: dict[str, int]) -> tuple[Path, DatasetSplits]:
    """The family's generated zip and its splits, 15 % of train/ held out (as ours does)."""
    zip_path = make_family_zip(work / f"{family}.zip", family, per_class)
    return zip_path, open_dataset(zip_path, work / family, 0.15, 0)


def ours(work: Path, splits: DatasetSplits, family: str, seed: int,
         overrides: dict[str, Any] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Our defaults (`pretrained: false`), with `overrides` of the config if given."""
    clock, curve, runs = Clock(), [], []

    def test_accuracy(run: loop.TrainingRun) -> float:
        # the weights validation judges (the average, from scratch: average.py)
        cm, _ = run.learner.confusion(run.ctx, run.data, "test", run.loop.judged)
        return accuracy(cm)

    def sink(p: EpochProgress) -> None:  # the trainer's progress: after each epoch, a test
        if p.step is not None or p.message is not None:
            return
        wall = clock.now()
        with clock.paused():
            acc = test_accuracy(runs[0])
        curve.append({"epoch": p.epoch, "seconds": round(wall, 2), "test": round(acc, 4),
                      "val": round(p.val_accuracy or 0.0, 4),
                      "images": p.epoch * len(splits.train)})
        print(f"  ours {family} seed {seed} {curve[-1]}", flush=True)

    req = TrainRequest(
        job_id=f"quality-{family}-{seed}", project_id=f"quality-{family}-{seed}",
        project_name=family, config=TrainingConfig(**{"pretrained": False, "device": "cpu", "seed": seed,
                                                 **(overrides or {})}),
        splits=splits, work_dir=work / "work", out_dir=work / f"out-{family}-{seed}",
        checkpoint_dir=work / f"ckpt-{family}-{seed}", dataset_url=f"file:///{family}.zip",
        dataset_sha256="0" * 64)
    result = PyTorchTrainer(on_ready=runs.append, threads=threads).train(req, sink)
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    return {"curve": curve, "test": result.metrics["test_accuracy"],
            "epochs": result.epochs_run, "stop": result.metrics["stop_reason"],
            "best_epoch": result.metrics["best_epoch"],
            "image_size": manifest["config"]["image_size"], "seconds": round(clock.now(), 1),
            "verdict": result.metrics["verdict"]["level"]}


def plain(root: Path, size: int, epochs: int, seed: int) -> dict[str, Any]:
    """The seed's train_model at `size`: test accuracy after each epoch."""
    from torchvision import datasets, models, transforms

    torch.manual_seed(seed)
    clock, curve = Clock(), []
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    train_ds = datasets.ImageFolder(root=f"{root}/train", transform=tf)
    test_ds = datasets.ImageFolder(root=f"{root}/test", transform=tf)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=32, shuffle=True)
    # the benchmark's own test passes, outside the clock: the test images decoded once
    test_x = torch.stack([x for x, _ in test_ds])
    test_y = torch.tensor(test_ds.targets)
    model = models.resnet18(weights=None, num_classes=len(train_ds.classes))
    crit = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            crit(model(x), y).backward()
            opt.step()
        wall = clock.now()
        with clock.paused():
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in zip(test_x.split(64), test_y.split(64), strict=True):
                    correct += int((model(x).argmax(1) == y).sum())
        curve.append({"epoch": epoch, "seconds": round(wall, 2),
                      "test": round(correct / len(test_ds), 4),
                      "images": epoch * len(train_ds)})
        print(f"  plain seed {seed} {curve[-1]}", flush=True)
    return {"curve": curve, "best": max(c["test"] for c in curve)}


def first_reaching(curve: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    return next((c for c in curve if c["test"] >= target), None)


def mean_curve(curves: list[list[dict[str, Any]]], finals: list[float] | None = None
               ) -> list[dict[str, Any]]:
    """Epoch by epoch, the mean over seeds of test accuracy, seconds and images. A run that
    stopped earlier counts with its final accuracy (the weights it handed back) after that."""
    length = max(len(c) for c in curves)
    out = []
    for i in range(length):
        tests, secs, imgs = [], [], []
        for k, c in enumerate(curves):
            if i < len(c):
                tests.append(c[i]["test"])
                secs.append(c[i]["seconds"])
                imgs.append(c[i]["images"])
            else:
                tests.append(finals[k] if finals is not None else c[-1]["test"])
        out.append({"epoch": i + 1, "test": round(statistics.mean(tests), 4),
                    "seconds": round(statistics.mean(secs), 2),
                    "images": round(statistics.mean(imgs)), "runs": len(secs)})
    return out


def _in_child(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn` in a pool's process with one thread (see `--jobs`)."""
    torch.set_num_threads(1)
    return fn(*args, **kwargs)


def bench_families(families: list[str], work: Path, plain_epochs: int,
                   per_class: dict[str, int], seeds: list[int], jobs: int
                   ) -> Iterator[dict[str, Any]]:
    """Ours and plain with each seed, family by family; with `jobs` > 1 every run in its own
    process with one thread, `jobs` at a time (ours first: the plain recipe trains as many
    epochs as ours ran). Each family's row as soon as its runs are done."""
    data = {f: family_data(f, work, per_class) for f in families}
    if jobs <= 1:
        for family in families:
            zip_path, splits = data[family]
            runs = [ours(work, splits, family, seed) for seed in seeds]
            epochs = max(plain_epochs, *(o["epochs"] for o in runs))
            root = plain_root(zip_path, splits, work / f"{family}-files")
            plains = [plain(root, runs[0]["image_size"], epochs, seed) for seed in seeds]
            yield compare(family, splits, per_class, seeds, runs, plains)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        ours_of = {f: [pool.submit(_in_child, ours, work, data[f][1], f, seed, threads=1)
                       for seed in seeds] for f in families}
        plains_of = {}
        for family in families:  # each family's plain runs queued once its own are done
            zip_path, splits = data[family]
            runs = [f.result() for f in ours_of[family]]
            epochs = max(plain_epochs, *(o["epochs"] for o in runs))
            root = plain_root(zip_path, splits, work / f"{family}-files")
            plains_of[family] = (runs, [pool.submit(_in_child, plain, root,
                                                    runs[0]["image_size"], epochs, seed)
                                        for seed in seeds])
        for family in families:
            runs, futures = plains_of[family]
            yield compare(family, data[family][1], per_class, seeds, runs,
                          [f.result() for f in futures])


def plain_root(zip_path: Path, splits: DatasetSplits, files: Path) -> Path:
    """The seed's recipe reads folders (ImageFolder): the zip extracted for it (ours reads the
    zip in place)."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(files)
    under, member = next(iter(splits.members.items()))  # the zip's top folder, if it has one
    return files / member[: len(member) - len(under)]


def compare(family: str, splits: DatasetSplits, per_class: dict[str, int], seeds: list[int],
            runs: list[dict[str, Any]], plains: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison is made on the mean curves (one seed's test accuracy on 80-200 test
    images moves by 0.05 from epoch to epoch)."""
    o_curve = mean_curve([o["curve"] for o in runs], [o["test"] for o in runs])
    p_curve = mean_curve([p["curve"] for p in plains])
    best = max(c["test"] for c in p_curve)
    print(f"  {family}: plain best (mean of {len(seeds)} seeds) {best}", flush=True)
    # equal epochs, seed by seed: plain's accuracy after as many epochs as ours ran
    at_equal = statistics.mean(p["curve"][o["epochs"] - 1]["test"]
                               for o, p in zip(runs, plains, strict=True))
    plain_hit = first_reaching(p_curve, best)
    ours_hit = first_reaching([c for c in o_curve if c["runs"] == len(seeds)], best)
    return {
        "family": family, "classes": len(FAMILIES[family][0]), "seeds": seeds,
        "train_per_class": per_class["train"], "test_images": len(splits.test),
        "image_size": runs[0]["image_size"], "runs": runs, "plains": plains,
        "ours": {"test": statistics.mean(o["test"] for o in runs),
                 "tests": [o["test"] for o in runs], "epochs_each": [o["epochs"] for o in runs],
                 "stops": [o["stop"] for o in runs], "curve": o_curve},
        "plain": {"best": best, "curve": p_curve},
        "plain_at_equal": at_equal,
        "plain_best_epoch": plain_hit["epoch"] if plain_hit else None,
        "plain_best_seconds": plain_hit["seconds"] if plain_hit else None,
        "ours_to_plain_best": ours_hit,
        "speedup": (plain_hit["seconds"] / ours_hit["seconds"]
                    if plain_hit and ours_hit else None),
        "speedup_images": (plain_hit["images"] / ours_hit["images"]
                           if plain_hit and ours_hit else None),
    }


def _f(v: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def report(rows: list[dict[str, Any]], seconds: float, args: argparse.Namespace) -> str:
    train, test = args.per_class
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Quality benchmark: our defaults vs the seed's plain recipe, from scratch", "",
        f"`python bench/quality.py {' '.join(args.argv)}`".replace(" `", "`") + " — "
        f"{platform.machine()}, {os.cpu_count()} cores, "
        + (f"{args.jobs} runs at a time, one thread each" if args.jobs > 1
           else f"one run at a time, {torch.get_num_threads()} threads")
        + f", torch {torch.__version__}; whole run {seconds / 60:.1f} min (load average at the end "
        f"{load:.1f}: seconds stretch with other work on the machine; the images-trained "
        f"ratio does not). Every figure is the mean over seeds {args.seed_list} (the model's "
        "initialisation and the order of batches; the data is the same), curves averaged "
        "epoch by epoch (a run that stopped counts with its handed-back accuracy after that), "
        "and plain's best is the best epoch of its mean curve: one seed's test accuracy on "
        "80-200 test images moves by about 0.05 from one epoch to the next, and the best of a "
        "single noisy curve is biased upwards. Generated families (class not given by colour), "
        f"{train} training and {test} test images a class, no val/ (ours holds 15 % of train/ "
        "out for validation, the plain recipe trains on all of it). Ours: the trainer's "
        "defaults with `pretrained: false` (epochs auto, image size auto). Plain: the seed's "
        "`train_model` (Resize + ToTensor, batch 32, ResNet-18, Adam 1e-3 constant, no "
        "augmentation) at the same image size, for as many epochs as ours ran"
        + (f" (at least {args.plain_epochs})" if args.plain_epochs else "") + ". Test "
        "accuracy after every epoch; seconds are training wall time with the benchmark's own "
        "test passes taken out (ours includes decoding, validation and checkpoints). Ours' "
        "final accuracy is the weights the job hands back (the best validation epoch's, or the "
        "cooled-down last epoch's when within two standard errors of it: docs/trainer.md).", "",
        "| family | classes | size | ours: test acc (each seed; epochs, why stopped) | plain "
        "at the same epochs | plain best (epoch, s) | ours reaches plain's best (epoch, s) | "
        "speed-up: seconds / images trained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, hit = r["ours"], r["ours_to_plain_best"]
        lines.append(
            f"| {r['family']} | {r['classes']} | {r['image_size']} px | "
            f"**{o['test']:.3f}** ({', '.join(f'{t:.2f}' for t in o['tests'])}; "
            f"{', '.join(map(str, o['epochs_each']))}; {', '.join(sorted(set(o['stops'])))}) | "
            f"{r['plain_at_equal']:.3f} | "
            f"{r['plain']['best']:.3f} ({r['plain_best_epoch']}, "
            f"{_f(r['plain_best_seconds'], '{:.0f}')} s) | "
            + (f"{hit['epoch']}, {hit['seconds']:.0f} s" if hit else "not reached")
            + f" | {_f(r['speedup'], '{:.1f}×')} / {_f(r['speedup_images'], '{:.1f}×')} |")
    lines += ["", "Test accuracy by epoch (ours / plain):", ""]
    for r in rows:
        o, p = r["ours"]["curve"], r["plain"]["curve"]
        pairs = [f"{i + 1}: {o[i]['test']:.2f}/{p[i]['test']:.2f}" if i < len(o)
                 else f"{i + 1}: –/{p[i]['test']:.2f}" for i in range(len(p))]
        lines.append(f"- **{r['family']}**: " + ", ".join(pairs))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILY_NAMES))
    ap.add_argument("--per-class", default="50,20",
                    help="training and test images a class (default 50,20)")
    ap.add_argument("--plain-epochs", type=int, default=0,
                    help="train the plain recipe at least this many epochs (default: as many "
                         "as ours ran)")
    ap.add_argument("--seeds", default="0,1", help="seeds, averaged (default 0,1)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="runs at a time, each in its own process with one thread (default: 2, "
                         "or 1 on a single core; 1: in this process, with all its threads)")
    ap.add_argument("--quick", action="store_true", help="one small family, a smoke run")
    ap.add_argument("--without-average", action="store_true",
                    help="ours without the weight average (average.py), for comparison")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    families = args.families.split(",")
    args.per_class = tuple(int(v) for v in args.per_class.split(","))
    if args.quick:
        families, args.per_class = families[:1], (20, 8)
    if args.without_average:  # the epoch loop then judges and hands back the live weights
        args.jobs = 1  # (patched in this process: its runs stay in it)
        from training_agent.adapters.trainers import epoch_loop

        epoch_loop.WeightAverage = lambda *a, **k: None  # type: ignore[assignment,misc]
    per_class = {"train": args.per_class[0], "test": args.per_class[1]}
    args.seed_list = [int(v) for v in args.seeds.split(",")]
    if args.quick:
        args.seed_list = args.seed_list[:1]
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in bench_families(families, Path(tmp), args.plain_epochs, per_class,
                                  args.seed_list, args.jobs):
            print(json.dumps({k: row[k] for k in ("family", "plain_at_equal", "speedup",
                                                  "speedup_images")}
                             | {"ours": row["ours"]["test"], "plain_best": row["plain"]["best"],
                                "epochs": row["ours"]["epochs_each"]}), flush=True)
            rows.append(row)
    text = report(rows, time.perf_counter() - t0, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
