"""The runner's dispatcher thread and its periodic duties."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from training_agent.domain.models import JobState
from training_agent.domain.service import TrainingService

from .failures import Failures
from .workers import Workers

log = logging.getLogger("training_agent.runner")

RECORD_RETRY_SECONDS = 2.0  # a dead worker's failure the store did not take is retried this often


class Dispatcher:
    """A runner's thread. Each tick reaps ended workers and runs `launch`; on their own timers
    it retries failures the store did not take, stops workers of jobs cancelled elsewhere,
    beats the jobs this agent holds and fails stale ones."""

    def __init__(
        self, service: TrainingService, workers: Workers, failures: Failures, *, owner: str,
        queued: Callable[[], list[str]], launch: Callable[[], None], heartbeat_seconds: float,
        stale_after: float, poll_seconds: float,
    ) -> None:
        self.service = service
        self._workers = workers
        self._failures = failures
        self.owner = owner
        self._queued = queued
        self._launch = launch
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = self._last_sweep = self._last_check = self._last_retry = 0.0

    def start(self) -> None:
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        """Tick now rather than after `poll_seconds`."""
        self._wake.set()

    @property
    def halted(self) -> bool:
        return self._halt.is_set()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                self._tick()
            except Exception:  # one bad tick (store busy) must not stop the runner
                log.exception("job runner tick failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _tick(self) -> None:
        """Each step on its own: one that fails (the store is away) neither stops the others
        nor floods the log."""
        now = time.monotonic()
        step = self._failures.step
        step("reap", self._workers.reap)
        if self._failures.pending and now - self._last_retry >= RECORD_RETRY_SECONDS:
            self._last_retry = now
            step("record failures", self._failures.retry)
        if now - self._last_check >= 1.0:
            self._last_check = now
            step("check cancels", self._stop_cancelled)
        self._workers.escalate()
        if now - self._last_beat >= self.heartbeat_seconds:
            self._last_beat = now
            step("heartbeat", self._beat_own)
        if now - self._last_sweep >= self.stale_after / 2:
            step("stale sweep", self.sweep_stale)
        step("launch", self._launch)

    def _stop_cancelled(self) -> None:
        """A job cancelled through another agent (or the CLI) still stops here within seconds."""
        for job_id in self._workers.ids():
            if self.service.job(job_id).state is JobState.CANCELLED:
                with self._workers.lock:
                    self._workers.stop(job_id)

    def _beat_own(self) -> None:
        """Beat the jobs this agent holds: queued ones (as their owner) and those whose worker
        it knows to be alive, so that no sweep, after an outage, takes them for stale."""
        for job_id in self._queued():
            self.service.heartbeat(job_id, self.owner)
        for job_id in self._workers.alive():
            self.service.heartbeat(job_id)

    def sweep_stale(self) -> None:
        """Fail the active jobs whose heartbeat went stale, after beating this agent's own."""
        self._last_sweep = time.monotonic()
        self._beat_own()
        for job in self.service.fail_stale(timedelta(seconds=self.stale_after)):
            log.warning("job %s failed: %s", job.id, job.error)
