"""The standby worker: one worker process spawned ahead of the next job. It builds its
container and loads the trainer's libraries while nothing waits for it (process.py's
`standby_job_process`), then waits for a job id on a pipe; the runner hands it the next job
instead of spawning a process that would import torch first (docs/architecture.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from ..container import Container
from .process import exit_cause, standby_job_process

log = logging.getLogger("training_agent.runner")

RETRY_SECONDS = 60.0  # after a standby worker died waiting, before the next


class Standby:
    """At most one waiting worker; its owner (the runner's workers) serialises the calls."""

    def __init__(self, mp: SpawnContext, worker_factory: Callable[[], Container], *, owner: str,
                 heartbeat_seconds: float, term_grace: float) -> None:
        self._mp = mp
        self._args = (worker_factory, owner, heartbeat_seconds)
        self._term_grace = term_grace
        self._waiting: tuple[BaseProcess, Connection] | None = None  # the process, its pipe
        self._retry_at = 0.0

    def pid(self) -> int | None:
        return self._waiting[0].pid if self._waiting is not None else None

    def keep(self) -> None:
        """Spawn one unless one waits; one that died waiting (killed, or its start failed) is
        replaced only after `RETRY_SECONDS`, so a start that always fails is not a loop."""
        if self._waiting is not None:
            proc = self._waiting[0]
            if proc.exitcode is None:
                return
            log.warning("standby worker process %s %s; the next in %.0f s", proc.pid,
                        exit_cause(proc.exitcode), RETRY_SECONDS)
            self.close()
            self._retry_at = time.monotonic() + RETRY_SECONDS
        if time.monotonic() < self._retry_at:
            return
        jobs, sender = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(target=standby_job_process, name="training-job-standby",
                                args=(jobs, *self._args))
        proc.start()
        jobs.close()
        self._waiting = (proc, sender)
        log.info("standby worker process %s started", proc.pid)

    def take(self, job_id: str) -> BaseProcess | None:
        """The waiting worker, given `job_id` to run; None when none is alive (a new process
        takes the job, as without a standby)."""
        if self._waiting is None:
            return None
        proc, sender = self._waiting
        try:
            if proc.exitcode is not None:
                raise OSError("exited")
            sender.send(job_id)
        except OSError:
            self.close()
            return None
        sender.close()
        self._waiting = None
        return proc

    def close(self) -> None:
        """Stop the waiting worker: closing its pipe ends its wait, SIGTERM its loading."""
        if self._waiting is None:
            return
        proc, sender = self._waiting
        self._waiting = None
        sender.close()
        if proc.exitcode is None:
            proc.terminate()
        proc.join(self._term_grace)
        if proc.exitcode is None:
            proc.kill()
            proc.join(5)
