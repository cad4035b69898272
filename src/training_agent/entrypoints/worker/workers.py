"""The worker processes of a runner: launched, adopted, reaped, and stopped."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from ..container import Container
from .adopted import AdoptedWorker
from .failures import Failures
from .process import run_job_process, standby_job_process

log = logging.getLogger("training_agent.runner")

STANDBY_RETRY_SECONDS = 60.0  # after a standby worker died waiting, before the next


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
        # a worker spawned ahead of its job (`standby`): its process and the pipe for the id
        self.standby = standby
        self._standby: tuple[BaseProcess, Connection] | None = None
        self._standby_retry_at = 0.0

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
            proc = self._hand_to_standby(job_id)
            if proc is None:
                proc = self._mp.Process(
                    target=run_job_process, name=f"training-job-{job_id[:8]}",
                    args=(self.worker_factory, job_id, self.owner, self.heartbeat_seconds),
                )
                proc.start()
            self._running[job_id] = proc
        log.info("job %s started in worker process %s", job_id, proc.pid)

    def keep_standby(self, slots: int, queued: int) -> None:
        """With `standby` on, keep one worker spawned ahead of the next job: it loads torch
        and the models while nothing waits for it, so a job starts without paying for the
        imports (seconds; docs/architecture.md). While every one of the `slots` is taken, one
        is spawned only for a job already `queued`: not beside the running jobs on the chance
        that another comes, so as not to take cores from them. The caller holds `lock`."""
        if not self.standby or (len(self._running) >= slots and not queued):
            return
        if self._standby is not None:
            proc = self._standby[0]
            if proc.exitcode is None:
                return
            # it died waiting (killed, or its start failed): not again for a while
            log.warning("standby worker process %s %s; the next in %.0f s", proc.pid,
                        exit_cause(proc.exitcode), STANDBY_RETRY_SECONDS)
            self._drop_standby()
            self._standby_retry_at = time.monotonic() + STANDBY_RETRY_SECONDS
        if time.monotonic() < self._standby_retry_at:
            return
        jobs, sender = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(
            target=standby_job_process, name="training-job-standby",
            args=(jobs, self.worker_factory, self.owner, self.heartbeat_seconds),
        )
        proc.start()
        jobs.close()
        self._standby = (proc, sender)
        log.info("standby worker process %s started", proc.pid)

    def _hand_to_standby(self, job_id: str) -> BaseProcess | None:
        """The standby worker, given `job_id` to run; None when there is none alive."""
        if self._standby is None:
            return None
        proc, sender = self._standby
        try:
            if proc.exitcode is not None:
                raise OSError("exited")
            sender.send(job_id)
        except OSError:  # it died waiting: a new process takes the job
            self._drop_standby()
            return None
        sender.close()
        self._standby = None
        return proc

    def _drop_standby(self) -> None:
        """Stop the standby worker (closing its pipe ends its wait; SIGTERM its import)."""
        if self._standby is None:
            return
        proc, sender = self._standby
        self._standby = None
        sender.close()
        if proc.exitcode is None:
            proc.terminate()
        proc.join(self.term_grace)
        if proc.exitcode is None:
            proc.kill()
            proc.join(5)

    def standby_pid(self) -> int | None:
        with self.lock:
            return self._standby[0].pid if self._standby is not None else None

    def close_standby(self) -> None:
        with self.lock:
            self._drop_standby()

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
