"""The three hooks by which a TrainingRun (loop.py) makes its reports, kept out of the loop:

- `check_dataset(run)`, in the preparing step right after the decode: the dataset check on the
  decoded cache (dataset_check.py), one summary line in the job's log;
- `analyse(run, metrics)`, after the best weights are tested: the result analysis
  (analysis.py); adds `findings` to the metrics, from which the summary is written;
- `write(run, metrics, files)`: dataset_report.json, report.json and report.html beside the
  model's other artifacts, before the manifest lists them all with their sha256.

Only the primary rank reports. With several ranks each holds a shard of the cache: the dataset
check then decodes the other shards' images once more at 32 px for their hashes, and the
analysis covers the primary rank's shard (the per-class metrics and confused-pair counts are
the whole split's)."""

from __future__ import annotations

import time
from typing import Any

from training_agent.domain.verdict import job_metrics, summarize

from . import analysis, dataset_check, report_page
from .data import CachedSplit


def check_dataset(run: Any) -> None:
    run.dataset_report = None
    if not run.dist.primary:
        return
    t0 = time.monotonic()
    pixels = {name: (dataset_check.Pixels(d.paths, d.images)
                     if isinstance(d, CachedSplit) and not run.dist.active else None)
              for name, d in run.data.items()}
    skipped = {name: list(d.skipped) for name, d in run.data.items()}
    report = dataset_check.check_dataset(run.req.splits, run.image_size, pixels, skipped,
                                         run.threads)
    run.dataset_report = report
    run.timings["dataset_check_seconds"] = round(time.monotonic() - t0, 3)
    run._say(report["summary"])


def analyse(run: Any, metrics: dict[str, Any]) -> None:
    run.analysis = None
    if not run.dist.primary:
        return
    t0 = time.monotonic()
    model = run.model if not run.cfg.compile else run.step_model
    run.analysis = analysis.analyse(
        model, run.data, run.transform.eval, run.batch * 2, run.device, run.autocast,
        run.req.splits.class_names, metrics, run.req.splits.root,
        getattr(run, "dataset_report", None))
    metrics["findings"] = run.analysis["findings"]
    run.timings["analysis_seconds"] = round(time.monotonic() - t0, 3)


def write(run: Any, metrics: dict[str, Any], files: dict[str, Any]) -> None:
    if getattr(run, "analysis", None) is None:
        return
    t0 = time.monotonic()
    req = run.req
    summary = summarize(job_metrics(metrics, len(req.splits.class_names)))
    ids = {"job_id": req.job_id, "project_id": req.project_id,
           "project_name": req.project_name, "dataset_sha256": req.dataset_sha256}
    files.update(report_page.write_reports(
        req.out_dir, getattr(run, "dataset_report", None), run.analysis, summary,
        f"Training report: {req.project_name}", req.splits.class_names, ids,
        {k: v for k, v in files.items() if k.endswith(".png")}))
    run.timings["report_write_seconds"] = round(time.monotonic() - t0, 3)


__all__ = ["analyse", "check_dataset", "write"]
