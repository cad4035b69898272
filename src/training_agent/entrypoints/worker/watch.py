"""Watch mode: claim `pending_training` projects as they appear and train them in workers."""

from __future__ import annotations

import logging
import threading

from .runner import JobRunner

log = logging.getLogger("training_agent.watch")


def watch(runner: JobRunner, stop: threading.Event, interval: float = 2.0) -> None:
    """Claims (atomically in the store: two watchers never train one project) only while the
    runner has a free slot, so claimed jobs start at once and unclaimed ones stay claimable."""
    service = runner.service
    log.info("watching for pending_training projects as %s (at most %d at once)",
             runner.owner, runner.max_concurrent)
    while not stop.is_set():
        try:
            while runner.free_slots() > 0 and not stop.is_set():
                job = service.claim_next_pending(runner.owner)
                if job is None:
                    break
                log.info("claimed project %s: job %s", job.project_id, job.id)
                runner.submit(job.id)
        except Exception:  # a store outage: keep watching, try again next round
            log.exception("claiming pending projects failed")
        stop.wait(interval)
