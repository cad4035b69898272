"""The three hooks by which a TrainingRun (loop.py) makes its reports, kept out of the loop:

- `start_dataset_check(run)`, right after the decode, and `finish_dataset_check(run)` after
  the first epoch's steps: the dataset check on the decoded cache (dataset_check.py), made in
  a thread while the first epoch trains; one summary line in the job's log;
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from training_agent.domain.verdict import job_metrics, summarize

from . import analysis, dataset_check, report_page
from .data import CachedSplit


def start_dataset_check(run: Any) -> None:
    """Start the dataset check in a thread, right after the decode: it reads the decoded
    cache and the files (their sha256 and headers) while the first epoch trains, instead of
    before it. `finish_dataset_check` waits for it."""
    run.dataset_report = None
    run.dataset_check = None
    if not run.dist.primary:
        return
    pixels = {name: (dataset_check.Pixels(d.paths, d.images)
                     if isinstance(d, CachedSplit) and not run.dist.active else None)
              for name, d in run.data.items()}
    skipped = {name: list(d.skipped) for name, d in run.data.items()}

    def check() -> tuple[dict[str, Any], float]:
        t0 = time.monotonic()
        report = dataset_check.check_dataset(run.req.splits, run.image_size, pixels, skipped,
                                             run.threads)
        return report, round(time.monotonic() - t0, 3)

    pool = ThreadPoolExecutor(1, thread_name_prefix="dataset-check")
    run.dataset_check = pool.submit(check)
    pool.shutdown(wait=False)  # the check runs on; nothing else goes to this pool


def finish_dataset_check(run: Any) -> None:
    """Wait for the dataset check (after the first epoch's steps; a second call does
    nothing), keep its report and say its summary line."""
    future, run.dataset_check = run.dataset_check, None
    if future is None:
        return
    report, seconds = future.result()
    run.dataset_report = report
    run.timings["dataset_check_seconds"] = seconds
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


__all__ = ["analyse", "finish_dataset_check", "start_dataset_check", "write"]
