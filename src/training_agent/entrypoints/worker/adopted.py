"""Workers a restarted agent finds still running: its predecessor's (killed with SIGKILL, their
workers reparented to init). The agent adopts them, so they count towards MAX_CONCURRENT_JOBS,
can be cancelled and stopped, and their jobs end failed if they die without finishing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

PID_MARK = "/pid:"


def split_worker_id(worker_id: str | None) -> tuple[str, int] | None:
    """`serve@host:8000/pid:4242` (the id a worker beats with) -> (`serve@host:8000`, 4242)."""
    if not worker_id or PID_MARK not in worker_id:
        return None
    owner, _, pid = worker_id.rpartition(PID_MARK)
    return (owner, int(pid)) if pid.isdigit() else None


def process_alive(pid: int) -> bool:
    """A live process (not a zombie) with this pid; on Linux, also one that is a worker of ours
    (a `multiprocessing` child), so a recycled pid is not mistaken for one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, though not ours to judge
    proc = Path(f"/proc/{pid}")
    if sys.platform.startswith("linux") and proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False  # it ended while we looked
        return state not in ("Z", "X") and b"multiprocessing" in cmdline
    return True


class AdoptedWorker:
    """A worker process that is not our child, with the part of multiprocessing's Process the
    runner uses (pid, exitcode, terminate, kill, join, is_alive). Its exit status cannot be
    known: `exitcode` is 0 once it has gone."""

    adopted = True

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @property
    def exitcode(self) -> int | None:
        return None if process_alive(self.pid) else 0

    def is_alive(self) -> bool:
        return self.exitcode is None

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
