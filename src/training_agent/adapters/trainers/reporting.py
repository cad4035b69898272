"""The reports a run makes (`Reports`), kept out of the loop:

- `begin_dataset_check()` once the images are decoded and the model set up (before the first
  epoch, or at its end when the training cache fills during it), and `finish_dataset_check()`
  at the end of the epoch during which it finished (at the latest before the results): the
  dataset check on the decoded cache (dataset_check.py), made in a thread while training
  runs; one summary line in the job's log;
- `analyse(learner, metrics)`, after the best weights are tested: the result analysis
  (analysis.py); adds `findings` to the metrics, from which the summary is written;
- `write(metrics, files)`: dataset_report.json, report.json and report.html beside the
  model's other artifacts, before the manifest lists them all with their sha256.

Only the primary rank reports. With several ranks each holds a shard of the cache: the dataset
check then decodes the other shards' images once more at 32 px for their hashes, and the
analysis covers the primary rank's shard (the per-class metrics and confused-pair counts are
the whole split's)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from training_agent.domain.verdict import job_metrics, summarize

from . import analysis, dataset_check, report_page
from .data import CachedSplit
from .learner import Learner
from .run_context import RunContext
from .run_data import RunData


class Reports:
    def __init__(self, ctx: RunContext, data: RunData, image_size: int) -> None:
        self.ctx, self.data, self.image_size = ctx, data, image_size
        self.dataset_check: Future[tuple[dict[str, Any], float]] | None = None  # running
        self.check_begun = False
        self.dataset_report: dict[str, Any] | None = None
        self.analysis: dict[str, Any] | None = None

    def begin_dataset_check(self) -> None:
        """Start the dataset check in a thread once every image is decoded and the model is
        set up: it reads the decoded caches and the files (their sha256 and headers) while
        training runs, instead of before it. Its threads hold Python's lock often, so it
        never runs beside the model's set-up or a cache still filling (both Python-bound
        too: measured on an H200, it stretched the set-up from 1.5 to 6.6 s). A second call,
        or a call before the data is settled, does nothing. Rank 0 only."""
        ctx, data, image_size = self.ctx, self.data, self.image_size
        if self.check_begun or not data.settled or not ctx.dist.primary:
            return
        self.check_begun = True

        pixels = {name: (dataset_check.Pixels(d.paths, d.images)
                         if isinstance(d, CachedSplit) and not ctx.dist.active else None)
                  for name, d in data.items()}
        skipped = {name: list(d.skipped) for name, d in data.items()}

        def check() -> tuple[dict[str, Any], float]:
            t0 = time.monotonic()
            # its file reads in processes, leaving a core to the training loop
            report = dataset_check.check_dataset(ctx.req.splits, image_size, pixels, skipped,
                                                 max(1, ctx.threads - 1))
            return report, round(time.monotonic() - t0, 3)

        pool = ThreadPoolExecutor(1, thread_name_prefix="dataset-check")
        self.dataset_check = pool.submit(check)
        pool.shutdown(wait=False)  # the check runs on; nothing else goes to this pool

    def finish_dataset_check(self, wait: bool = True) -> None:
        """Keep the dataset check's report and say its summary line: at the end of the epoch
        during which it finished (`wait=False`: it never holds training back), at the latest
        before the results (waiting for it). A second call does nothing. It begins the check
        first if it could not begin before (the training cache filled during the epoch just
        ended, or no epoch ran)."""
        self.begin_dataset_check()
        future = self.dataset_check
        if future is None or (not wait and not future.done()):
            return
        self.dataset_check = None
        report, seconds = future.result()
        self.dataset_report = report
        self.ctx.timings["dataset_check_seconds"] = seconds
        self.ctx.say(report["summary"])

    def analyse(self, learner: Learner, metrics: dict[str, Any],
                known: dict[str, analysis.Predictions] | None = None) -> None:
        """report.json's analysis of the handed-back model; adds `findings` to `metrics`.
        `known`: the evaluation's predictions of validation and test (not run again)."""
        ctx = self.ctx
        if not ctx.dist.primary:
            return
        t0 = time.monotonic()
        self.analysis = analysis.analyse(
            learner.eval_model, dict(self.data.items()), learner.transform.eval,
            learner.batch.per_rank * 2, ctx.device, learner.autocast,
            ctx.req.splits.class_names, metrics, ctx.req.splits.root, self.dataset_report,
            known)
        metrics["findings"] = self.analysis["findings"]
        ctx.timings["analysis_seconds"] = round(time.monotonic() - t0, 3)

    def write(self, metrics: dict[str, Any], files: dict[str, Any]) -> None:
        """dataset_report.json, report.json and report.html into the artifacts."""
        if self.analysis is None:
            return
        t0 = time.monotonic()
        req = self.ctx.req
        summary = summarize(job_metrics(metrics, len(req.splits.class_names)))
        ids = {"job_id": req.job_id, "project_id": req.project_id,
               "project_name": req.project_name, "dataset_sha256": req.dataset_sha256}
        files.update(report_page.write_reports(
            req.out_dir, self.dataset_report, self.analysis, summary,
            f"Training report: {req.project_name}", req.splits.class_names, ids,
            {k: v for k, v in files.items() if k.endswith(".png")}))
        self.ctx.timings["report_write_seconds"] = round(time.monotonic() - t0, 3)


__all__ = ["Reports"]
