"""The worker process: builds its own container and runs one job, beating while it runs."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import FrameType

from training_agent.adapters.trainers.priority import lowest_for_this_thread
from training_agent.domain.models import TrainingJob
from training_agent.domain.service import TrainingService

from ..container import Container

log = logging.getLogger("training_agent.worker")

HEARTBEAT_SECONDS = 5.0
NOTIFY_FLUSH_SECONDS = 30.0


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


def interruption(exc: BaseException) -> str:
    """The signal a KeyboardInterrupt or a signal's SystemExit(128 + n) stands for."""
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128:
        try:
            return signal.Signals(exc.code - 128).name
        except ValueError:
            pass
    return "SIGINT" if isinstance(exc, KeyboardInterrupt) else f"exit {getattr(exc, 'code', '')}"


@dataclass
class Outcome:
    """How `run_job_here` ended: the job as last seen, and the interruption, if one."""

    job: TrainingJob | None
    error: BaseException | None = None  # the KeyboardInterrupt or SystemExit itself

    @property
    def interrupted(self) -> str | None:
        """The signal that interrupted the job ("SIGINT", "SIGTERM", "exit N"), if one."""
        return interruption(self.error) if self.error is not None else None


def run_job_here(service: TrainingService, job_id: str, owner: str, *,
                 on_progress: Callable[[TrainingJob], None] | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 fail_on_interrupt: bool = True) -> Outcome:
    """One job's lifecycle in this process, the same wherever it runs (`train` in the
    foreground, a worker process, rank 0 under torchrun): SIGTERM raised as SystemExit(143) in
    the main thread, so the service's cleanup runs; a heartbeat from a thread the whole time
    (a slow epoch or upload still looks alive to the agents that fail stale jobs);
    `service.run`. An interruption (Ctrl-C, a signal) ends the job failed, "interrupted by
    SIGINT", with further signals ignored meanwhile, when `fail_on_interrupt` (a worker
    process leaves that to its agent and lets the interruption propagate). Notifications in
    flight are flushed before it returns, and the signal handlers restored."""
    main = threading.current_thread() is threading.main_thread()
    handlers = ({sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
                if main else {})
    if main:
        signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        try:
            with heartbeat(service, job_id, owner, heartbeat_seconds):
                return Outcome(service.run(job_id, on_progress))
        except (KeyboardInterrupt, SystemExit) as exc:
            if not fail_on_interrupt:
                raise
            for sig in handlers:  # a second signal must not cut the failing short
                signal.signal(sig, signal.SIG_IGN)
            return Outcome(service.fail_job(job_id, f"interrupted by {interruption(exc)}"), exc)
    finally:
        service.flush_notifications(NOTIFY_FLUSH_SECONDS)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run_job_process(container_factory: Callable[[], Container], job_id: str, owner: str,
                    heartbeat_seconds: float) -> None:
    """Entry point of a spawned worker process."""
    _run_job(_worker_container(container_factory), job_id, owner, heartbeat_seconds)


def standby_job_process(jobs: Connection, container_factory: Callable[[], Container],
                        owner: str, heartbeat_seconds: float) -> None:
    """Entry point of a standby worker (workers.py): spawned before its job, it builds its
    container and starts loading the trainer's libraries (torch, the models, the GPU's
    context: `Trainer.warm_up`, as a job does when it starts), then waits for a job id on
    `jobs` and runs that job. Its agent closing the pipe (stopping, or gone) ends it."""
    container = _worker_container(container_factory)
    loading = threading.Thread(target=_load_meekly, args=(container,), name="standby-load")
    loading.start()
    try:
        job_id = jobs.recv()
    except (EOFError, OSError):
        return
    finally:
        jobs.close()
    loading.join()  # it only starts the trainer's loading thread: the job waits for that
    _run_job(container, str(job_id), owner, heartbeat_seconds)


def _load_meekly(container: Container) -> None:
    """Start loading the trainer's libraries from a thread at the lowest CPU priority (on
    Linux a thread's own; the threads it starts inherit it), so that a standby spawned
    beside a running job does not take that job's cores: measured on 2 cores, a 0.6 s
    job took 3.1 s beside a standby importing at normal priority (bench/results/
    job_start.md). The job itself, once handed over, runs on the main thread at the
    process's normal priority."""
    lowest_for_this_thread()
    container.trainer().warm_up()


def _worker_container(container_factory: Callable[[], Container]) -> Container:
    os.dup2(2, 1)  # stdout may be the MCP stdio channel of the parent: keep it clean
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the agent decides
    container = container_factory()
    logging.basicConfig(level=str(container.config.log_level() or "INFO").upper(),
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s")
    return container


def _run_job(container: Container, job_id: str, owner: str, heartbeat_seconds: float) -> None:
    service = container.training_service()
    # a SIGTERM from the agent fails nothing here: the agent records why its worker ended
    outcome = run_job_here(service, job_id, f"{owner}/pid:{os.getpid()}",
                           heartbeat_seconds=heartbeat_seconds, fail_on_interrupt=False)
    if outcome.job is not None:
        log.info("job %s ended %s", job_id, outcome.job.state.value)
