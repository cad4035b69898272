"""The worker processes of a runner: launched, adopted, reaped, and stopped."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from ..container import Container
from .adopted import AdoptedWorker
from .failures import Failures
from .process import exit_cause, run_job_process
from .standby import Standby

log = logging.getLogger("training_agent.runner")


class Workers:
    """The worker processes of a runner's jobs, by job id. `lock` (the runner's, which also
    guards its queue) guards them: `len()`, `in`, `stop` and `take_all` expect the caller to
    hold it, the other methods take it. A job whose worker ends is failed through `failures`."""

    def __init__(
        self, lock: threading.Lock, failures: Failures, worker_factory: Callable[[], Container],
        *, owner: str, heartbeat_seconds: float, term_grace: float, standby: bool = False,
    ) -> None:
        self.lock = lock
        self._failures = failures
        self.worker_factory = worker_factory
        self.owner = owner
        self.heartbeat_seconds = heartbeat_seconds
        self.term_grace = term_grace
        self._mp = multiprocessing.get_context("spawn")
        self._running: dict[str, BaseProcess | AdoptedWorker] = {}
        self._stopping: dict[str, float] = {}  # job id -> when SIGTERM was sent
        self._standby = (Standby(self._mp, worker_factory, owner=owner,
                                 heartbeat_seconds=heartbeat_seconds, term_grace=term_grace)
                         if standby else None)

    def __len__(self) -> int:
        return len(self._running)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._running

    def ids(self) -> list[str]:
        with self.lock:
            return list(self._running)

    def alive(self) -> list[str]:
        """The jobs whose worker has not exited."""
        with self.lock:
            return [j for j, p in self._running.items() if p.exitcode is None]

    def pid(self, job_id: str) -> int | None:
        with self.lock:
            proc = self._running.get(job_id)
        return proc.pid if proc is not None else None

    def launch(self, job_id: str) -> None:
        """Run `job_id` in the standby worker when there is one, else in a new process."""
        with self.lock:
            proc = self._standby.take(job_id) if self._standby is not None else None
            if proc is None:
                proc = self._mp.Process(
                    target=run_job_process, name=f"training-job-{job_id[:8]}",
                    args=(self.worker_factory, job_id, self.owner, self.heartbeat_seconds),
                )
                proc.start()
            self._running[job_id] = proc
        log.info("job %s started in worker process %s", job_id, proc.pid)

    def keep_standby(self, slots: int, queued: int) -> None:
        """With a standby worker: keep one spawned while a slot is free, and while every one
        of the `slots` is taken, only for a job already `queued` (not on the chance that
        another comes, so as not to take the running jobs' cores). The caller holds `lock`."""
        if self._standby is not None and (len(self._running) < slots or queued):
            self._standby.keep()

    def standby_pid(self) -> int | None:
        with self.lock:
            return self._standby.pid() if self._standby is not None else None

    def close_standby(self) -> None:
        with self.lock:
            if self._standby is not None:
                self._standby.close()

    def adopt(self, job_id: str, pid: int) -> None:
        """Take over a worker left running by this agent's previous life; fail its job if it
        has gone."""
        worker = AdoptedWorker(pid)
        if worker.is_alive():
            log.warning("adopting worker %s of job %s, left running by this agent's previous "
                        "life; it counts towards MAX_CONCURRENT_JOBS", pid, job_id)
            with self.lock:
                self._running[job_id] = worker
        else:
            self._failures.fail_if_active(job_id, f"worker process {pid} is gone: the agent "
                                                  "stopped while the job ran")

    def reap(self) -> None:
        """Forget the workers that have exited and fail their jobs (if still active)."""
        with self.lock:
            ended = {j: p for j, p in self._running.items() if p.exitcode is not None}
            for job_id in ended:
                del self._running[job_id]
                self._stopping.pop(job_id, None)
        for job_id, proc in ended.items():
            proc.join()
            if isinstance(proc, AdoptedWorker):  # not our child: no exit status to read
                self._failures.fail_if_active(job_id, f"adopted worker process {proc.pid} "
                                                      "exited before the job finished")
            else:
                self._failures.fail_if_active(job_id,
                                              f"worker process {exit_cause(proc.exitcode)}")

    def stop(self, job_id: str) -> None:
        """SIGTERM the worker of `job_id`, if any and not already stopping."""
        proc = self._running.get(job_id)
        if proc is not None and job_id not in self._stopping:
            log.info("stopping worker %s of job %s", proc.pid, job_id)
            proc.terminate()
            self._stopping[job_id] = time.monotonic()

    def escalate(self) -> None:
        """SIGKILL the workers that ignored SIGTERM for `term_grace` seconds."""
        with self.lock:
            late = [j for j, t in self._stopping.items()
                    if time.monotonic() - t > self.term_grace and j in self._running]
            for job_id in late:
                log.warning("worker of job %s ignored SIGTERM; killing it", job_id)
                self._running[job_id].kill()
                self._stopping[job_id] = float("inf")

    def take_all(self) -> dict[str, BaseProcess | AdoptedWorker]:
        """Forget every worker, for `terminate`."""
        running, self._running = dict(self._running), {}
        return running

    def terminate(self, running: dict[str, BaseProcess | AdoptedWorker]) -> None:
        """Stop these workers (SIGTERM, SIGKILL after `term_grace`) and fail their jobs: the
        agent is stopping."""
        for proc in running.values():
            if proc.is_alive():
                proc.terminate()
        for job_id, proc in running.items():
            proc.join(self.term_grace)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            self._failures.fail_if_active(job_id, "the agent stopped while the job ran (worker "
                                                  f"{exit_cause(proc.exitcode)})")
