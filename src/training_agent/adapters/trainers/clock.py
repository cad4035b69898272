"""How long this process has run (the start-up part of a job's timings), and a tally of
seconds by name (the parts of the training's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


def process_age() -> float | None:
    """Seconds since this process started (from /proc on Linux); None where unknown."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def start_timings(before: dict[str, float]) -> dict[str, float]:
    """A run's first timings: the job's steps before training, and the seconds from the
    process's start to the trainer's (imports, start-up and those steps)."""
    age = process_age()
    return {**before, **({"process_start_to_trainer_seconds": round(age, 3)}
                         if age is not None else {})}


class Tally:
    """Seconds added up by name: `with tally("steps_seconds"): ...` adds the block's time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - t0

    def split(self, whole: float, rest: str) -> dict[str, float]:
        """The named parts of `whole` seconds, rounded, and what is left of it as `rest`."""
        parts = {k: round(v, 3) for k, v in self.seconds.items()}
        return {**parts, rest: round(max(0.0, whole - sum(self.seconds.values())), 3)}
