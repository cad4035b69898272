"""Decoding processes: plain Python subprocesses that each import only the image module (numpy
and PIL, not torch) and decode chunks of images into a shared memory file.

Why processes and not threads: the per-image Python work of a decode (PIL's open and header
parsing, EXIF, mode conversion, the array copies) holds the GIL, so a thread pool stops scaling
after about two threads. Why not `multiprocessing`: its `spawn` and `forkserver` children
re-import the caller's `__main__` (the whole CLI, torch included) before their first task, and
`fork` copies a process that may hold torch's threads and a CUDA context. These children start
in a fraction of a second, hold nothing of the caller, and exit when the caller goes (their
stdin closes).

The protocol is one pickled task on a child's stdin, one pickled result on its stdout, one task
in flight per child (a task is a chunk of images, tens of milliseconds of work): the name of
what to run (`decode_rows`, or `file_facts` for the dataset check) and its arguments."""

from __future__ import annotations

import os
import pickle
import selectors
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])  # the folder holding training_agent/
# the package's folder goes first on the child's path (an installed or a source tree alike);
# the child inherits the environment as it is
_COMMAND = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from training_agent.adapters.trainers.decode_pool import serve; serve()")


class DecodeFailed(RuntimeError):
    """A decoding process failed as a whole (not one unreadable image: those are results)."""


class DecodePool:
    """`workers` decoding processes; `run(tasks)` returns each task's result, in order."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(self.workers):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", _COMMAND], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, close_fds=True))
        except BaseException:
            self.close()
            raise

    def run(self, tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        todo = iter(range(len(tasks)))
        busy: dict[int, int] = {}  # process index -> the task it is running
        with selectors.DefaultSelector() as sel:
            def feed(w: int) -> None:
                i = next(todo, None)
                if i is None:
                    return
                busy[w] = i
                stdin = self.procs[w].stdin
                assert stdin is not None
                pickle.dump(tasks[i], stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()

            for w, proc in enumerate(self.procs):
                sel.register(proc.stdout, selectors.EVENT_READ, w)  # type: ignore[arg-type]
                feed(w)
            while busy:
                for key, _ in sel.select():
                    w = key.data
                    stdout: IO[bytes] = key.fileobj  # type: ignore[assignment]
                    try:
                        status, value = pickle.load(stdout)
                    except EOFError:
                        raise DecodeFailed(
                            f"a decoding process ended unexpectedly (exit code "
                            f"{self.procs[w].wait()})") from None
                    if status != "ok":
                        raise DecodeFailed(f"a decoding process failed: {value}")
                    results[busy.pop(w)] = value
                    feed(w)
        return results

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()  # the child's next read ends it
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve() -> None:
    """A decoding process's main loop: tasks in on stdin, results out on stdout."""
    import signal

    from .images import decode_rows, file_facts

    tasks = {"decode_rows": decode_rows, "file_facts": file_facts}
    # Ctrl-C reaches the whole process group: the caller decides, and closes our stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    while True:
        try:
            task = pickle.load(stdin)
        except EOFError:
            return
        try:  # a task: (the function's name, its arguments...)
            result: tuple[str, Any] = ("ok", tasks[task[0]](*task[1:]))
        except Exception as exc:  # a task-level failure (the shared file vanished, ...)
            result = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
