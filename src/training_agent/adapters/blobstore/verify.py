"""What the cloud blob stores share: downloads that appear only when complete and verified,
and streaming digests."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training_agent.domain.errors import StorageError

MiB = 1024 * 1024


@contextmanager
def partial_file(dest: Path) -> Iterator[Path]:
    """A scratch path beside `dest`, renamed onto it on success and removed on failure, so a
    reader never sees half a download."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path, algorithm: str, chunk: int = MiB) -> bytes:
    """`md5` or `crc32c` of a file, read in chunks (bounded memory)."""
    digest: Any
    if algorithm == "crc32c":
        import google_crc32c  # installed with google-cloud-storage

        digest = google_crc32c.Checksum()
    else:
        digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.digest()


def check_size(path: Path, expected: int | None, where: str) -> int:
    size = path.stat().st_size
    if expected is not None and size != expected:
        raise StorageError(f"{where}: {size} bytes transferred, the store says {expected}")
    return size


def check_digest(path: Path, algorithm: str, expected: bytes, where: str) -> None:
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise StorageError(f"{where}: {algorithm} mismatch (local {b64(actual)}, store "
                           f"{b64(expected)}): the transfer was corrupted")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
