"""A run's end: the handed-back weights tested on validation and test, the metrics and
verdict, and (rank 0) the artifacts: weights, plots, reports and the manifest that lists them."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from training_agent.domain.ports import TrainResult
from training_agent.domain.verdict import judge

from . import artifacts
from .analysis import Predictions, predict
from .epoch_loop import EpochLoop, hand_back_weights
from .evaluation import accuracy, per_class
from .reporting import Reports


def finish(loop: EpochLoop, reports: Reports) -> TrainResult | None:
    """The run's result on rank 0; None on the other ranks, once they have taken their part
    in the evaluation."""
    ctx, data, learner = loop.ctx, loop.data, loop.learner
    names = ctx.req.splits.class_names
    data.settle(ctx)  # done at the first epoch's end, unless none ran (a resumed, finished run)
    reports.finish_dataset_check()  # still running, or no epoch ran
    t0 = time.monotonic()
    hand_back_weights(loop)
    preds: dict[str, Predictions] = {}
    val_cm, preds["val"] = tested(loop, "val")
    metrics: dict[str, Any] = {"val_accuracy": accuracy(val_cm), "best_epoch": loop.best.epoch,
                               "epochs_run": len(loop.history),
                               "stop_reason": loop.plan.stop_reason}
    cm, split = val_cm, "val"
    if ctx.req.splits.test:
        cm, preds["test"] = tested(loop, "test")
        split = "test"
        metrics["test_accuracy"] = accuracy(cm)
    counts = {k: data.total(ctx, k) for k, _ in data.items()}
    ctx.timings["evaluate_seconds"] = round(time.monotonic() - t0, 3)  # best weights, val, test
    if not ctx.dist.primary:
        return None
    metrics["per_class"] = per_class(cm, names)
    metrics["confusion_matrix"] = {"split": split, "labels": names, "matrix": cm.tolist()}
    metrics["history"] = loop.history
    metrics["verdict"] = judge(metrics)
    reports.analyse(learner, metrics, preds)  # report.json's analysis; metrics["findings"]
    files = write(loop, reports, metrics, cm, split, counts)
    loop.checkpoints.clear()
    return TrainResult(
        accuracy=metrics.get("test_accuracy", metrics["val_accuracy"]), metrics=metrics,
        epochs_run=len(loop.history), backbone=ctx.cfg.backbone, trainer=ctx.cfg.trainer,
        class_names=names, artifacts=files,
        weights_sha256=artifacts.sha256_file(files["model.pth"]))


def tested(loop: EpochLoop, split: str) -> tuple[torch.Tensor, Predictions]:
    """The handed-back model on `split`: its confusion matrix over every rank, from one
    forward pass whose predictions (probabilities, embeddings) of this rank's images the
    result analysis reuses instead of a second pass."""
    ctx, learner = loop.ctx, loop.learner
    pred = predict(learner.eval_model, loop.data[split], learner.transform.eval,
                   learner.batch.per_rank * 2, ctx.device, learner.autocast)
    n = len(ctx.req.splits.class_names)
    cm = torch.zeros(n * n, dtype=torch.float64)
    if len(pred.labels):
        labels = torch.from_numpy(pred.labels)
        keep = labels >= 0  # a streamed image found unreadable is labelled IGNORE
        guess = torch.from_numpy(pred.probs.argmax(1))
        cm += torch.bincount(labels[keep] * n + guess[keep], minlength=n * n).double()
    return ctx.dist.sum(cm).round().long().view(n, n), pred


def write(loop: EpochLoop, reports: Reports, metrics: dict[str, Any], cm: torch.Tensor,
          split: str, counts: dict[str, int]) -> dict[str, Path]:
    ctx, learner = loop.ctx, loop.learner
    req, out = ctx.req, ctx.req.out_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    files = artifacts.write_weights(learner.model.state_dict(), out)
    files.update(artifacts.write_plots(loop.history, cm.tolist(), req.splits.class_names,
                                       f"confusion matrix ({split})", out))
    reports.write(metrics, files)  # dataset_report.json, report.json, report.html
    ctx.timings["write_seconds"] = round(time.monotonic() - t0, 3)
    ctx.timings["total_seconds"] = round(time.monotonic() - ctx.t_start, 3)
    body = manifest(loop, metrics, counts)
    files["manifest.json"] = artifacts.write_manifest(body, dict(files), out)
    return files


def manifest(loop: EpochLoop, metrics: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """The manifest's body (artifacts.write_manifest adds the files and their sha256)."""
    ctx, data, learner = loop.ctx, loop.data, loop.learner
    req, cfg, spec = ctx.req, ctx.cfg, learner.spec
    return {
        "format": "training-agent/model-manifest", "format_version": 1,
        "job_id": req.job_id, "project_id": req.project_id, "project_name": req.project_name,
        "trainer": cfg.trainer, "backbone": cfg.backbone,
        "pretrained": cfg.pretrained, "framework": "pytorch",
        "num_classes": len(req.splits.class_names), "class_names": req.splits.class_names,
        "input": {
            "image_size": learner.image_size, "resize": "squash", "interpolation": "bilinear",
            "mean": list(spec.mean), "std": list(spec.std), "colour_mode": "RGB",
            "layout": "NCHW", "scale": "x / 255, then (x - mean) / std",
            "jpeg_draft": True, "exif_transpose": True, "alpha": "composited on white",
            "preprocess_function": "training_agent.adapters.trainers.images:load_image",
            "decoder": data.described(),  # what decoded the images (see decoding.py)
        },
        "metrics": metrics,
        "config": learner.resolved_config(ctx),
        "dataset": {
            "url": req.dataset_url, "sha256": req.dataset_sha256, "counts": counts,
            "skipped": data.skipped, "val_held_out": req.splits.val_held_out,
            "class_counts": dict(Counter(req.splits.class_names[lab]
                                         for _, lab in req.splits.train)),
        },
        "runtime": {"device": str(ctx.device), "world_size": ctx.dist.world,
                    "precision": learner.precision, "threads": ctx.threads,
                    "cached": data.cached, "gpu_cache": data.gpu_cache,
                    # where the decoded images were: "gpu", "host", "disk" (None: streamed)
                    "cache": data.place,
                    "batch_per_rank": learner.batch.per_rank, "batch": learner.batch.info,
                    "steps_per_epoch": learner.batch.steps, "compile": cfg.compile,
                    # from scratch: validation and the weights judged an average (average.py)
                    "weight_average": ({"half_life_steps": round(loop.average.half_life, 1)}
                                       if loop.average is not None else None),
                    # `augment: auto` from scratch: the shift's reach grows over these epochs
                    "augment_ramp_epochs": loop.ramp_epochs or None,
                    # and whether colours tell the classes apart (colour_check.py)
                    "colour_check": loop.colour},
        "library_versions": artifacts.library_versions(),
        "timings": ctx.timings,
        **req.extra_manifest,
    }
