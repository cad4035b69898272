"""What the process's settings tell the trainer adapters, set once by the composition root.

The trainer adapters and the backbone providers (plugins, built by entry points with no
arguments) read these values here and never the environment: `entrypoints/settings.py` reads
the environment, and `entrypoints/container.py` calls `configure` when it builds the container.
Used as a library without the container, the defaults below apply (all plugins, online, the
memory budget from free memory, `~/.cache`, one process)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainerEnvironment:
    plugins: tuple[str, ...] | None = None  # the plugins to load; None: every installed one
    offline: bool = False  # never touch the network for weights (fail fast, saying so)
    cache_gb: float | None = None  # memory for the decoded cache; None: 40 % of free, <= 16
    # scratch disk for the decoded cache over the memory budget (disk_cache.py); None: half
    # the free space, 0: none (streamed)
    disk_cache_gb: float | None = None
    # the training cache fills while the first epoch trains (filling.py); None: with CUDA
    overlap: bool | None = None
    # streamed on a GPU: the part of each batch the CPU's processes decode beside nvJPEG;
    # None balances it batch by batch (device_stream.py), 0 leaves it all to nvJPEG
    stream_cpu_share: float | None = None
    checkpoint_seconds: float = 30.0  # the checkpoint is written at most this often (resume.py)
    cache_home: Path | None = None  # our cache folder's parent; None: ~/.cache
    world_size: int = 1  # torchrun's process group, as its variables describe it
    local_rank: int = 0
    local_world_size: int | None = None


_current = TrainerEnvironment()


def current() -> TrainerEnvironment:
    return _current


def configure(**values: Any) -> TrainerEnvironment:
    """Replace the given fields (the container does this once per process)."""
    global _current
    _current = replace(_current, **values)
    return _current
