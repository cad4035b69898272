"""JobRunner: runs queued jobs in worker processes, a bounded number at a time, in order.

One dispatcher thread launches workers, reaps them (a worker that died ends its job failed with
the exit code or signal), stops the workers of cancelled jobs, and beats the jobs still waiting
in its queue. Queued jobs live in the store, so a restarted agent finds and adopts them."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.process import BaseProcess

from training_agent.domain.errors import MetadataError
from training_agent.domain.models import JobState, TrainingJob
from training_agent.domain.service import TrainingService

from ..container import Container, build_container
from ..settings import Settings
from .adopted import AdoptedWorker, process_alive, split_worker_id
from .process import run_job_process

log = logging.getLogger("training_agent.runner")

SHUTDOWN_NOTIFY_SECONDS = 10.0
RECORD_RETRY_SECONDS = 2.0  # a dead worker's failure the store did not take is retried this often
COMPLAIN_EVERY_SECONDS = 30.0  # one log line per failing dispatcher step while the store is away
# an active job whose heartbeat is older than this is failed by the next agent that looks
STALE_AFTER_SECONDS = 120.0


def agent_id(role: str, instance: object | None = None) -> str:
    """Who owns a job. Unique among live agents (`serve` adds its port, others their pid) and,
    for `serve`, stable across restarts: a restarted agent adopts the jobs it had queued."""
    return f"{role}@{socket.gethostname()}" + (f":{instance}" if instance is not None else "")


def exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (killed: out of memory, or by an operator)" if name == "SIGKILL" else ""
        return f"was killed by signal {name}{hint}"
    if exitcode == 0:
        return "exited before the job finished"
    return f"exited with code {exitcode}"


class JobRunner:
    def __init__(
        self, service: TrainingService, worker_factory: Callable[[], Container], *,
        owner: str, max_concurrent: int = 1, heartbeat_seconds: float = 5.0,
        stale_after: float = STALE_AFTER_SECONDS, term_grace: float = 5.0, poll_seconds: float = 0.2,
    ) -> None:
        self.service = service
        self.worker_factory = worker_factory
        self.owner = owner
        self.max_concurrent = max_concurrent
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after
        self.term_grace = term_grace
        self.poll_seconds = poll_seconds
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._queue: deque[str] = deque()
        self._running: dict[str, BaseProcess | AdoptedWorker] = {}
        self._stopping: dict[str, float] = {}  # job id -> when SIGTERM was sent
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = self._last_sweep = self._last_check = self._last_retry = 0.0
        # job id -> why its worker ended, for failures the store could not take yet (an outage):
        # retried until written, so the real cause is recorded once the store is back
        self._unrecorded: dict[str, str] = {}
        self._complained: dict[str, float] = {}

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._halt.clear()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()

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
                self._adopt_worker(job.id, found[1])
        self._sweep_stale()

    def _predecessor(self, owner: str) -> bool:
        """An earlier life of this agent: the same owner id (`serve` keeps its port), or the
        same role on this host whose agent process is gone (`watch`, `mcp`: their pid)."""
        if owner == self.owner:
            return True
        role, _, instance = owner.rpartition(":")
        mine, _, _ = self.owner.rpartition(":")
        return (role == mine and not role.startswith("serve@") and instance.isdigit()
                and not process_alive(int(instance)) and int(instance) != os.getpid())

    def _adopt_worker(self, job_id: str, pid: int) -> None:
        worker = AdoptedWorker(pid)
        if worker.is_alive():
            log.warning("adopting worker %s of job %s, left running by this agent's previous "
                        "life; it counts towards MAX_CONCURRENT_JOBS", pid, job_id)
            with self._lock:
                self._running[job_id] = worker
        else:
            self._fail_if_active(job_id, f"worker process {pid} is gone: the agent stopped "
                                         "while the job ran")

    def stop(self, wait: float = 0.0) -> None:
        """Stop launching; give running jobs `wait` seconds, then stop them and fail their jobs.
        Jobs still queued stay queued in the store for the next start."""
        deadline = time.monotonic() + wait
        while self.running_jobs() and time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            running, self._running = dict(self._running), {}
            self._queue.clear()
        for proc in running.values():
            if proc.is_alive():
                proc.terminate()
        for job_id, proc in running.items():
            proc.join(self.term_grace)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            self._fail_if_active(job_id, "the agent stopped while the job ran (worker "
                                         f"{exit_cause(proc.exitcode)})")
        self.service.flush_notifications(SHUTDOWN_NOTIFY_SECONDS)  # failure messages, first

    # ---- commands ---------------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._queue and job_id not in self._running:
                self._queue.append(job_id)
        self._wake.set()

    def cancel(self, project_id: str) -> TrainingJob:
        """Cancel in the store (the job ends `cancelled` whoever runs it), then stop our worker."""
        job = self.service.cancel(project_id)
        with self._lock:
            if job.id in self._queue:
                self._queue.remove(job.id)
            proc = self._running.get(job.id)
            if proc is not None and job.id not in self._stopping:
                self._terminate(job.id, proc)
        self._wake.set()
        return job

    # ---- queries ----------------------------------------------------------------------------
    def running_jobs(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def queued_jobs(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def free_slots(self) -> int:
        with self._lock:
            return self.max_concurrent - len(self._running) - len(self._queue)

    def worker_pid(self, job_id: str) -> int | None:
        with self._lock:
            proc = self._running.get(job_id)
        return proc.pid if proc is not None else None

    def check(self) -> str:
        """For /health: raises when the dispatcher is not running."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("job runner is not running")
        with self._lock:
            return (f"{len(self._running)} running, {len(self._queue)} queued, "
                    f"at most {self.max_concurrent} at once")

    # ---- the dispatcher ---------------------------------------------------------------------
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
        self._step("reap", self._reap)
        if self._unrecorded and now - self._last_retry >= RECORD_RETRY_SECONDS:
            self._last_retry = now
            self._step("record failures", self._record_unrecorded)
        if now - self._last_check >= 1.0:
            self._last_check = now
            self._step("check cancels", self._stop_cancelled)
        self._escalate()
        if now - self._last_beat >= self.heartbeat_seconds:
            self._last_beat = now
            self._step("heartbeat", self._beat_own)
        if now - self._last_sweep >= self.stale_after / 2:
            self._step("stale sweep", self._sweep_stale)
        self._step("launch", self._launch)

    def _step(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except MetadataError as exc:  # an outage: one line now and then, no traceback
            self._complain(what, exc)
        except Exception:
            log.exception("job runner: %s failed", what)

    def _complain(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._complained.get(what, -COMPLAIN_EVERY_SECONDS) >= COMPLAIN_EVERY_SECONDS:
            self._complained[what] = now
            log.warning("job runner: %s failed, retrying: %s", what, exc)

    def _beat_own(self) -> None:
        """Beat the jobs this agent holds: queued ones (as their owner) and those whose worker
        it knows to be alive, so that no sweep, after an outage, takes them for stale."""
        for job_id in self.queued_jobs():
            self.service.heartbeat(job_id, self.owner)
        with self._lock:
            alive = [j for j, p in self._running.items() if p.exitcode is None]
        for job_id in alive:
            self.service.heartbeat(job_id)

    def _launch(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                if not self._queue or len(self._running) >= self.max_concurrent:
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
            proc = self._mp.Process(
                target=run_job_process, name=f"training-job-{job_id[:8]}",
                args=(self.worker_factory, job_id, self.owner, self.heartbeat_seconds),
            )
            with self._lock:
                proc.start()
                self._running[job_id] = proc
            log.info("job %s started in worker process %s", job_id, proc.pid)

    def _reap(self) -> None:
        with self._lock:
            ended = {j: p for j, p in self._running.items() if p.exitcode is not None}
            for job_id in ended:
                del self._running[job_id]
                self._stopping.pop(job_id, None)
        for job_id, proc in ended.items():
            proc.join()
            if isinstance(proc, AdoptedWorker):  # not our child: no exit status to read
                self._fail_if_active(job_id, f"adopted worker process {proc.pid} exited "
                                             "before the job finished")
            else:
                self._fail_if_active(job_id, f"worker process {exit_cause(proc.exitcode)}")

    def _stop_cancelled(self) -> None:
        """A job cancelled through another agent (or the CLI) still stops here within seconds."""
        for job_id in self.running_jobs():
            if self.service.job(job_id).state is JobState.CANCELLED:
                with self._lock:
                    proc = self._running.get(job_id)
                    if proc is not None and job_id not in self._stopping:
                        self._terminate(job_id, proc)

    def _terminate(self, job_id: str, proc: BaseProcess | AdoptedWorker) -> None:
        log.info("stopping worker %s of job %s", proc.pid, job_id)
        proc.terminate()
        self._stopping[job_id] = time.monotonic()

    def _escalate(self) -> None:
        with self._lock:
            late = [j for j, t in self._stopping.items()
                    if time.monotonic() - t > self.term_grace and j in self._running]
            for job_id in late:
                log.warning("worker of job %s ignored SIGTERM; killing it", job_id)
                self._running[job_id].kill()
                self._stopping[job_id] = float("inf")

    def _sweep_stale(self) -> None:
        self._last_sweep = time.monotonic()
        self._beat_own()
        for job in self.service.fail_stale(timedelta(seconds=self.stale_after)):
            log.warning("job %s failed: %s", job.id, job.error)

    def _fail_if_active(self, job_id: str, cause: str) -> None:
        """Its worker has exited: fail the job if still active, and remove its work folder
        (a worker killed by SIGKILL or out of memory could not)."""
        try:
            job = self.service.fail_job(job_id, cause)
        except Exception as exc:  # the store is away: kept, and retried until it is written
            self._unrecorded[job_id] = cause
            self._complain("record failures", exc)
        else:
            self._unrecorded.pop(job_id, None)
            if job.state is JobState.FAILED and job.error == cause:
                log.warning("job %s failed: %s", job_id, cause)
        finally:
            self.service.remove_work(job_id)

    def _record_unrecorded(self) -> None:
        for job_id, cause in list(self._unrecorded.items()):
            self._fail_if_active(job_id, cause)


def build_runner(container: Container, settings: Settings, owner: str) -> JobRunner:
    """The runner of an agent; each worker builds its own container from the same settings."""
    return JobRunner(
        container.training_service(), functools.partial(build_container, settings),
        owner=owner, max_concurrent=settings.max_concurrent_jobs,
    )
