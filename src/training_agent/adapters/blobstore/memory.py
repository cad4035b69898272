"""In-memory BlobStore (`mem://bucket/key`): the fake for unit tests."""

from __future__ import annotations

from pathlib import Path

from training_agent.domain.errors import BlobNotFound, StorageError
from training_agent.domain.ports import BlobStore
from training_agent.domain.urls import redact_url


class InMemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        # "download" / "upload" / "delete" -> the error that call raises
        self.fail_on: dict[str, Exception] = {}

    def put(self, url: str, data: bytes) -> str:
        self.blobs[url] = data
        return url

    def download(self, url: str, dest: Path) -> int:
        if "download" in self.fail_on:
            raise self.fail_on["download"]
        if url not in self.blobs:
            raise BlobNotFound(f"no blob at {redact_url(url)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.blobs[url])
        return len(self.blobs[url])

    def upload(self, src: Path, url: str) -> str:
        if "upload" in self.fail_on:
            raise self.fail_on["upload"]
        if not src.is_file():
            raise StorageError(f"nothing to upload at {src}")
        self.blobs[url] = src.read_bytes()
        return url

    def size(self, url: str) -> int:
        if url not in self.blobs:
            raise BlobNotFound(f"no blob at {redact_url(url)}")
        return len(self.blobs[url])

    def delete(self, url: str) -> None:
        if "delete" in self.fail_on:
            raise self.fail_on["delete"]
        self.blobs.pop(url, None)
