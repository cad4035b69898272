"""The worker process: builds its own container and runs one job, beating while it runs."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from training_agent.domain.service import TrainingService

from ..container import Container

log = logging.getLogger("training_agent.worker")

HEARTBEAT_SECONDS = 5.0
NOTIFY_FLUSH_SECONDS = 30.0


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler: raise SystemExit(128 + signum) in the main thread."""
    # SystemExit unwinds through the service's `finally`, so the work folder is removed
    raise SystemExit(128 + signum)


@contextmanager
def heartbeat(service: TrainingService, job_id: str, owner: str,
              every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Beats the job from a thread while the block runs, so a long download or a slow epoch
    still looks alive to the agents that fail stale jobs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                if not service.heartbeat(job_id, owner):
                    return  # final: finished, cancelled or failed from outside
            except Exception as exc:  # a busy store must not stop the job; the next beat retries
                log.warning("heartbeat for job %s failed: %s", job_id, exc)

    service.heartbeat(job_id, owner)
    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def run_job_process(container_factory: Callable[[], Container], job_id: str, owner: str,
                    heartbeat_seconds: float) -> None:
    """Entry point of a spawned worker process."""
    os.dup2(2, 1)  # stdout may be the MCP stdio channel of the parent: keep it clean
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the agent decides
    container = container_factory()
    logging.basicConfig(level=str(container.config.log_level() or "INFO").upper(),
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s")
    service = container.training_service()
    try:
        with heartbeat(service, job_id, f"{owner}/pid:{os.getpid()}", heartbeat_seconds):
            job = service.run(job_id)
        log.info("job %s ended %s", job_id, job.state.value)
    finally:
        container.notifier().flush(NOTIFY_FLUSH_SECONDS)
