"""Local folder BlobStore for `file://` URLs: the embedded default model store."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from training_agent.domain.errors import BlobNotFound, StorageError, StoragePermissionDenied
from training_agent.domain.ports import BlobStore
from training_agent.domain.urls import key_url_problem, redact_url


def file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StorageError(f"not a file:// URL: {redact_url(url)}")
    if problem := key_url_problem(url):
        raise StorageError(problem)
    return Path(unquote(parts.netloc + parts.path))


class LocalBlobStore(BlobStore):
    def download(self, url: str, dest: Path) -> int:
        src = file_url_path(url)
        if not src.is_file():
            raise BlobNotFound(f"no file at {redact_url(url)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(src, dest)
        except PermissionError as exc:
            raise StoragePermissionDenied(f"permission denied reading {redact_url(url)}") from exc
        size = dest.stat().st_size
        if size != src.stat().st_size:
            raise StorageError(f"copy of {redact_url(url)} is {size} bytes, expected "
                               f"{src.stat().st_size}")
        return size

    def upload(self, src: Path, url: str) -> str:
        target = file_url_path(url)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # write beside the target then rename: a reader never sees half a file
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # a failed copy leaves no half file beside the target
                raise
        except PermissionError as exc:
            raise StoragePermissionDenied(f"permission denied writing {redact_url(url)}") from exc
        except OSError as exc:
            raise StorageError(f"could not write {redact_url(url)}: {exc}") from exc
        return url

    def size(self, url: str) -> int:
        path = file_url_path(url)
        if not path.is_file():
            raise BlobNotFound(f"no file at {redact_url(url)}")
        return path.stat().st_size

    def local_path(self, url: str) -> Path | None:
        return file_url_path(url)

    def delete(self, url: str) -> None:
        path = file_url_path(url)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {redact_url(url)}: {exc}") from exc
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the folder it was alone in (datasets/<id>/), when empty

    def ping(self, url: str | None = None) -> None:
        """With a URL: its folder (or the nearest one above it that exists, where the store
        will create it) must be a writable directory."""
        if url is None:
            return
        path = file_url_path(url)
        while not path.exists() and path.parent != path:
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise StorageError(f"{path} is not a writable folder for the store at "
                               f"{redact_url(url)}")
