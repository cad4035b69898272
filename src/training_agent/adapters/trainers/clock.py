"""How long this process has run: the start-up part of a job's timings."""

from __future__ import annotations

import os


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


