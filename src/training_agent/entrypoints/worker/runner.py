"""JobRunner: runs queued jobs in worker processes, a bounded number at a time, in order.

One dispatcher thread launches workers, reaps them (a worker that died ends its job failed with
the exit code or signal), stops the workers of cancelled jobs, and beats the jobs still waiting
in its queue. Queued jobs live in the store, so a restarted agent finds and adopts them."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from training_agent.domain.models import JobState, TrainingJob
from training_agent.domain.service import TrainingService

from ..container import Container, build_container
from ..settings import Settings
from .adopted import process_alive, split_worker_id
from .dispatcher import RECORD_RETRY_SECONDS, Dispatcher
from .failures import COMPLAIN_EVERY_SECONDS, Failures
from .process import exit_cause
from .workers import Workers

log = logging.getLogger("training_agent.runner")

__all__ = [
    "COMPLAIN_EVERY_SECONDS", "RECORD_RETRY_SECONDS", "SHUTDOWN_NOTIFY_SECONDS",
    "STALE_AFTER_SECONDS", "JobRunner", "agent_id", "build_runner", "exit_cause",
]

SHUTDOWN_NOTIFY_SECONDS = 10.0
# an active job whose heartbeat is older than this is failed by the next agent that looks
STALE_AFTER_SECONDS = 120.0


def agent_id(role: str, instance: object | None = None) -> str:
    """Who owns a job. Unique among live agents (`serve` adds its port, others their pid) and,
    for `serve`, stable across restarts: a restarted agent adopts the jobs it had queued."""
    return f"{role}@{socket.gethostname()}" + (f":{instance}" if instance is not None else "")


class JobRunner:
    """Runs the jobs submitted to it in worker processes, at most `max_concurrent` at once, in
    the order submitted; the public face of its queue, workers and dispatcher thread."""

    def __init__(
        self, service: TrainingService, worker_factory: Callable[[], Container], *,
        owner: str, max_concurrent: int = 1, heartbeat_seconds: float = 5.0,
        stale_after: float = STALE_AFTER_SECONDS, term_grace: float = 5.0, poll_seconds: float = 0.2,
        standby: bool = False,
    ) -> None:
        self.service = service
        self.worker_factory = worker_factory
        self.owner = owner
        self.max_concurrent = max_concurrent
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.term_grace = term_grace
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()  # guards the queue and the workers
        self._queue: deque[str] = deque()
        self._failures = Failures(service)
        self._workers = Workers(self._lock, self._failures, worker_factory, owner=owner,
                                heartbeat_seconds=heartbeat_seconds, term_grace=term_grace,
                                standby=standby)
        self._dispatcher = Dispatcher(
            service, self._workers, self._failures, owner=owner, queued=self.queued_jobs,
            launch=self._launch, heartbeat_seconds=heartbeat_seconds, stale_after=stale_after,
            poll_seconds=poll_seconds,
        )

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._dispatcher.start()

    def recover(self) -> None:
        """Adopt what this agent's previous life left (owner ids are unique among live agents,
        so nothing is adopted twice): its queued jobs, and its workers still running (a
        predecessor killed with SIGKILL leaves them training), which then count towards
        `max_concurrent`; a job whose worker has gone is failed at once. Then fail the active
        jobs whose heartbeat went stale while no agent watched them."""
        for job in sorted(self.service.active_jobs(), key=lambda j: j.created_at):
            if job.state is JobState.QUEUED and job.worker_id == self.owner:
                if self.service.heartbeat(job.id, self.owner):
                    log.info("adopting queued job %s of project %s", job.id, job.project_id)
                    self.submit(job.id)
            elif (found := split_worker_id(job.worker_id)) and self._predecessor(found[0]):
                self._workers.adopt(job.id, found[1])
        self._dispatcher.sweep_stale()

    def _predecessor(self, owner: str) -> bool:
        """An earlier life of this agent: the same owner id (`serve` keeps its port), or the
        same role on this host whose agent process is gone (`watch`, `mcp`: their pid)."""
        if owner == self.owner:
            return True
        role, _, instance = owner.rpartition(":")
        mine, _, _ = self.owner.rpartition(":")
        return (role == mine and not role.startswith("serve@") and instance.isdigit()
                and not process_alive(int(instance)) and int(instance) != os.getpid())

    def stop(self, wait: float = 0.0) -> None:
        """Stop launching; give running jobs `wait` seconds, then stop them and fail their jobs.
        Jobs still queued stay queued in the store for the next start."""
        deadline = time.monotonic() + wait
        while self.running_jobs() and time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
        self._dispatcher.stop()
        with self._lock:
            running = self._workers.take_all()
            self._queue.clear()
        self._workers.terminate(running)
        self._workers.close_standby()
        self.service.flush_notifications(SHUTDOWN_NOTIFY_SECONDS)  # failure messages, first

    # ---- commands ---------------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._queue and job_id not in self._workers:
                self._queue.append(job_id)
        self._dispatcher.wake()

    def cancel(self, project_id: str) -> TrainingJob:
        """Cancel in the store (the job ends `cancelled` whoever runs it), then stop our worker."""
        job = self.service.cancel(project_id)
        with self._lock:
            if job.id in self._queue:
                self._queue.remove(job.id)
            self._workers.stop(job.id)
        self._dispatcher.wake()
        return job

    # ---- queries ----------------------------------------------------------------------------
    def running_jobs(self) -> list[str]:
        return self._workers.ids()

    def queued_jobs(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def free_slots(self) -> int:
        with self._lock:
            return self.max_concurrent - len(self._workers) - len(self._queue)

    def worker_pid(self, job_id: str) -> int | None:
        return self._workers.pid(job_id)

    def standby_pid(self) -> int | None:
        """The worker process waiting, loaded, for the next job (`standby`), if one."""
        return self._workers.standby_pid()

    def check(self) -> str:
        """For /health: raises when the dispatcher is not running."""
        if not self._dispatcher.alive():
            raise RuntimeError("job runner is not running")
        with self._lock:
            return (f"{len(self._workers)} running, {len(self._queue)} queued, "
                    f"at most {self.max_concurrent} at once")

    # ---- the dispatcher's launch step -------------------------------------------------------
    def _launch(self) -> None:
        self._launch_queued()
        with self._lock:
            if not self._dispatcher.halted:
                self._workers.keep_standby(self.max_concurrent, len(self._queue))

    def _launch_queued(self) -> None:
        while not self._dispatcher.halted:
            with self._lock:
                if not self._queue or len(self._workers) >= self.max_concurrent:
                    return
                job_id = self._queue.popleft()
            try:
                state = self.service.job(job_id).state
            except Exception:
                with self._lock:  # the store is away: the job keeps its place
                    self._queue.appendleft(job_id)
                raise
            if state is not JobState.QUEUED:
                continue  # cancelled (or taken over) while it waited
            self._workers.launch(job_id)


def build_runner(container: Container, settings: Settings, owner: str) -> JobRunner:
    """The runner of an agent; each worker builds its own container from the same settings."""
    return JobRunner(
        container.training_service(), functools.partial(build_container, settings),
        owner=owner, max_concurrent=settings.max_concurrent_jobs,
        standby=settings.standby_worker,
    )
