"""What the runner does when things fail: jobs whose worker has gone, and dispatcher steps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from training_agent.domain.errors import MetadataError
from training_agent.domain.models import JobState
from training_agent.domain.service import TrainingService

log = logging.getLogger("training_agent.runner")

COMPLAIN_EVERY_SECONDS = 30.0  # one log line per failing dispatcher step while the store is away


class Failures:
    """Fails in the store the jobs whose worker has gone; a failure the store could not take yet
    (an outage) is kept and retried until written, so the real cause is recorded once the store
    is back. Logs a failed dispatcher step: an outage once per 30 s per step, no traceback."""

    def __init__(self, service: TrainingService) -> None:
        self.service = service
        self._unrecorded: dict[str, str] = {}  # job id -> why its worker ended
        self._complained: dict[str, float] = {}  # step -> when last logged

    @property
    def pending(self) -> bool:
        """Failures not written yet."""
        return bool(self._unrecorded)

    def fail_if_active(self, job_id: str, cause: str) -> None:
        """Its worker has exited: fail the job if still active, and remove its work folder
        (a worker killed by SIGKILL or out of memory could not)."""
        try:
            job = self.service.fail_job(job_id, cause)
        except Exception as exc:  # the store is away: kept, and retried until it is written
            self._unrecorded[job_id] = cause
            self.complain("record failures", exc)
        else:
            self._unrecorded.pop(job_id, None)
            if job.state is JobState.FAILED and job.error == cause:
                log.warning("job %s failed: %s", job_id, cause)
        finally:
            self.service.remove_work(job_id)

    def retry(self) -> None:
        for job_id, cause in list(self._unrecorded.items()):
            self.fail_if_active(job_id, cause)

    def step(self, what: str, fn: Callable[[], None]) -> None:
        """Run one dispatcher step; its failure is logged, never raised."""
        try:
            fn()
        except MetadataError as exc:  # an outage: one line now and then, no traceback
            self.complain(what, exc)
        except Exception:
            log.exception("job runner: %s failed", what)

    def complain(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._complained.get(what, -COMPLAIN_EVERY_SECONDS) >= COMPLAIN_EVERY_SECONDS:
            self._complained[what] = now
            log.warning("job runner: %s failed, retrying: %s", what, exc)
