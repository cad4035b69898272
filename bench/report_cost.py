"""What the reports cost, one command: `python bench/report_cost.py` (writes
bench/results/report_cost.md and .json).

A generated dataset of about 2,000 images (training_agent.testing.families, `scenes` by
default: photo-like JPEGs of 4 classes, 400 training and 100 test images a class, no val/, so
the trainer holds 15 % of train/ out) is trained from scratch by the real trainer on this
machine's CPU, 2 epochs at 32 px, and the manifest's timings are read:

- `dataset_check_seconds`: the dataset check after the decode (hashes of the files' bytes, PIL
  headers, perceptual hashes from the decoded cache, duplicate search);
- `analysis_seconds`: the result analysis after testing (a forward pass, confused pairs,
  thumbnails, suspected label errors with cleanlab); report.json's `seconds_by_part` splits it.
  For a `chance` or `weak` model the label check is withheld and only the result split is
  predicted; a sound model's analysis predicts every split and runs cleanlab. The benchmark
  times both on the same trained model: the analysis as shipped, then once more with the
  label check forced (its seconds are taken out of the job's and reported apart), so one run
  gives the cost for a weak model and for a sound one;
- `report_write_seconds`: dataset_report.json, report.json and report.html;
- `decode_seconds`, `train_seconds` and `total_seconds` (the whole `train()` call) for scale.

The issue's target: the report's seconds at most 5 % of the whole job. `--quick` is a smoke run
on 200 images."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from training_agent.adapters.trainers import analysis
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.archive import open_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import TrainRequest
from training_agent.testing.families import make_family_zip

RESULTS = Path(__file__).parent / "results" / "report_cost.md"
TARGET = 0.05
PARTS = ("dataset_check_seconds", "analysis_seconds", "report_write_seconds")


def run(work: Path, family: str, per_class: dict[str, int], epochs: int, size: int
        ) -> dict[str, Any]:
    archive = make_family_zip(work / f"{family}.zip", family, per_class)
    dest = work / "data"
    splits = open_dataset(archive, dest, 0.15, 0)
    req = TrainRequest(
        job_id=f"report-cost-{family}", project_id=f"report-cost-{family}",
        project_name=family,
        config=TrainingConfig(pretrained=False, device="cpu", epochs=epochs, image_size=size),
        splits=splits, work_dir=work / "work", out_dir=work / "out",
        checkpoint_dir=work / "ckpt", dataset_url=f"file:///{family}.zip",
        dataset_sha256="0" * 64)
    shipped = analysis.analyse
    extra: dict[str, Any] = {}

    def both(*args: Any, **kwargs: Any) -> dict[str, Any]:
        t0 = time.monotonic()
        result = shipped(*args, **kwargs)
        extra["shipped_seconds"] = time.monotonic() - t0
        if "withheld" in result["label_issues"]:  # once more, as for a sound model
            saved, analysis.UNRELIABLE = analysis.UNRELIABLE, ()
            t0 = time.monotonic()
            try:
                full = shipped(*args, **kwargs)
            finally:
                analysis.UNRELIABLE = saved
            extra["full_seconds"] = time.monotonic() - t0
            extra["full"] = full
        return result

    analysis.analyse = both  # type: ignore[assignment]
    try:
        result = PyTorchTrainer().train(req, lambda p: None)
    finally:
        analysis.analyse = shipped  # type: ignore[assignment]
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    report = json.loads(result.artifacts["report.json"].read_text())
    t = dict(manifest["timings"])
    forced = extra.get("full_seconds", 0.0)
    t["analysis_seconds"] -= forced  # the forced analysis is not the job's
    t["total_seconds"] -= forced
    full = extra.get("full") or report
    sound = dict(t, analysis_seconds=(t["analysis_seconds"] - extra["shipped_seconds"]
                                      + forced) if forced else t["analysis_seconds"])
    sound["total_seconds"] = t["total_seconds"] - t["analysis_seconds"] \
        + sound["analysis_seconds"]
    images = sum(manifest["dataset"]["counts"].values())
    return {"family": family, "images": images, "counts": manifest["dataset"]["counts"],
            "epochs": result.epochs_run, "image_size": manifest["config"]["image_size"],
            "backbone": manifest["backbone"], "threads": manifest["runtime"]["threads"],
            "batch": manifest["runtime"]["batch_per_rank"],
            "test_accuracy": result.metrics.get("test_accuracy"),
            "verdict": result.metrics["verdict"]["level"],
            "timings": t, "timings_sound_model": sound,
            "analysis_by_part": report.get("seconds_by_part", {}),
            "analysis_by_part_sound_model": full.get("seconds_by_part", {}),
            "label_issues": {k: report["label_issues"].get(k)
                             for k in ("count", "flagged", "withheld")},
            "label_issues_sound_model": {k: full["label_issues"].get(k)
                                         for k in ("count", "flagged", "cap")}}


ROWS = (("decode_seconds", "decode into the cache (for scale)"),
        ("dataset_check_seconds", "**dataset check**"),
        ("train_seconds", "training epochs (for scale)"),
        ("analysis_seconds", "**result analysis**"),
        ("report_write_seconds", "**report files written**"))


def share(t: dict[str, float]) -> float:
    return sum(t.get(k, 0.0) for k in PARTS) / t["total_seconds"]


def table(a: dict[str, float], b: dict[str, float]) -> str:
    lines = ["| part | as shipped: s | share | a sound model (label check): s | share |",
             "|---|---:|---:|---:|---:|"]
    for key, label in ROWS:
        if key in a:
            lines.append(f"| {label} | {a[key]:.2f} | {a[key] / a['total_seconds']:.1%} "
                         f"| {b[key]:.2f} | {b[key] / b['total_seconds']:.1%} |")
    ra, rb = (sum(t.get(k, 0.0) for k in PARTS) for t in (a, b))
    lines.append(f"| **the reports together** | **{ra:.2f}** | **{share(a):.1%}** "
                 f"| **{rb:.2f}** | **{share(b):.1%}** |")
    lines.append(f"| whole job (`total_seconds`) | {a['total_seconds']:.2f} | 100% "
                 f"| {b['total_seconds']:.2f} | 100% |")
    return "\n".join(lines)


def markdown(row: dict[str, Any], argv: list[str]) -> str:
    a, b = row["timings"], row["timings_sound_model"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cmd = " ".join(["python bench/report_cost.py", *argv])
    li, lf = row["label_issues"], row["label_issues_sound_model"]
    shipped_labels = (f"withheld (verdict `{li['withheld']}`)" if li.get("withheld")
                      else f"{li['count']} listed of {li['flagged']} flagged")

    def parts(d: dict[str, float]) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in d.items())

    epoch = a["train_seconds"] / max(1, row["epochs"])
    ratio = row["counts"]["train"] / row["images"]

    def est(epochs: int) -> str:
        return f"{1 / (3 * epochs * ratio + 1):.0%}"

    steps_epochs = -(-250 // max(1, -(-row["counts"]["train"] // row["batch"])))
    return f"""# What the reports cost

`{cmd}` on {platform.machine()}, {os.cpu_count()} CPU cores (shared with other work: load
average {load:.1f} at the end), torch {torch.__version__}, {row['threads']} intra-op threads;
the real trainer on the CPU.

Dataset: the generated `{row['family']}` family, {row['images']} images
({', '.join(f'{k} {v}' for k, v in row['counts'].items())}; val held out from train/),
{row['backbone']} from scratch, {row['epochs']} epochs at {row['image_size']} px. Test
accuracy {row['test_accuracy']:.3f}, verdict `{row['verdict']}`.

*As shipped* is this job: suspected label errors {shipped_labels}. *A sound model* is the same
trained model analysed once more with the label check forced (those seconds are not in the
first column's job): cleanlab flagged {lf['flagged']}, {lf['count']} listed (cap {lf['cap']}).

{table(a, b)}

The analysis by part, as shipped: {parts(row['analysis_by_part'])}; for a sound model:
{parts(row['analysis_by_part_sound_model'])} (label issues include importing cleanlab, which
loads scikit-learn, SciPy and pandas: about 2.5 s of CPU).

**Dataset check: {a['dataset_check_seconds'] / a['total_seconds']:.1%} of the job**
({a['dataset_check_seconds'] / a['decode_seconds']:.2f}× the decode it follows: it hashes the
files' bytes, reads their headers and works from the decoded cache; nothing is decoded twice).
**All reports: {share(a):.1%} as shipped, {share(b):.1%} for a sound model**, against the
issue's target of {TARGET:.0%}.

Why the sound model's share is what it is: its analysis is one forward pass over every image
({row['images']}), while an epoch is a forward and backward pass (about three forward passes)
over the {row['counts']['train']} training images ({epoch:.0f} s an epoch here). So that pass
is roughly 1 / (3 × epochs × {row['counts']['train']} / {row['images']} + 1) of the job:
{est(2)} at 2 epochs, {est(5)} at 5, {est(10)} at 10, {est(20)} at 20 (an estimate from this
formula, not measured). `epochs: auto` runs at least 250 optimizer steps (`min_steps`), i.e.
{steps_epochs} epochs of this training set at batch {row['batch']}.

Caveats: one run on a shared 2-core machine, so the seconds are noisy (a second run of the
same command moved a part's seconds by up to 4×); the shares are from one run. Timings:
`manifest.json`'s `timings`, report.json's `seconds_by_part`.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="scenes")
    ap.add_argument("--train", type=int, default=400, help="training images a class")
    ap.add_argument("--test", type=int, default=100, help="test images a class")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="a smoke run on 200 images")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    per_class = {"train": 40, "test": 10} if args.quick else {"train": args.train,
                                                              "test": args.test}
    with tempfile.TemporaryDirectory() as tmp:
        row = run(Path(tmp), args.family, per_class, args.epochs, args.image_size)
    text = markdown(row, list(argv if argv is not None else sys.argv[1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(row, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
