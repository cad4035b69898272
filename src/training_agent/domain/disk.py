"""The local disk: free space checked before big writes, and a full disk named as the cause."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from .errors import DiskFull

# What other code says when the disk filled up under it: the OS (ENOSPC, EDQUOT), SQLite, and
# torch's zip writer, whose checkpoint save reports a short write as "unexpected pos".
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_WORDS = ("no space left on device", "database or disk is full", "disk quota exceeded",
               "unexpected pos", "pytorchstreamwriter failed writing")


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds `path` (or would hold it: the nearest folder
    that exists)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_free_space(path: Path, needed: int, what: str, reserve: int = 0) -> None:
    """DiskFull, naming `what`, unless `needed` bytes plus `reserve` fit on `path`'s disk."""
    free = free_bytes(path)
    if needed + reserve > free:
        raise DiskFull(
            f"no space left on device: {what} needs {needed} bytes"
            + (f" (and {reserve} kept free)" if reserve else "")
            + f", and the disk holding {path} has {free} free")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from or while handling, says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return True
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if any(words in str(current).lower() for words in _FULL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def failure_cause(exc: BaseException) -> str:
    """A failed job's cause as people read it: `Type: message`, and for a full disk
    `DiskFull: no space left on device (…the original error…)`."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DiskFull) or not is_disk_full(exc):
        return text
    return f"DiskFull: no space left on device ({text})"
