"""BlobStore that routes each URL to the adapter for its scheme."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from training_agent.domain.errors import StorageError
from training_agent.domain.ports import BlobStore
from training_agent.domain.urls import redact_url


def scheme_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.netloc == "storage.googleapis.com":
        return "gs"
    return parts.scheme


class BlobStoreRouter(BlobStore):
    """`stores` maps a scheme to a factory, so a cloud client is only built when used."""

    def __init__(self, stores: Mapping[str, Callable[[], BlobStore]]) -> None:
        self._factories = dict(stores)
        self._built: dict[str, BlobStore] = {}

    def store_for(self, url: str) -> BlobStore:
        scheme = scheme_of(url)
        if scheme not in self._factories:
            known = ", ".join(f"{s}://" for s in sorted(self._factories))
            # the message reaches job.error and agent_logs: no user-info, no signed query
            raise StorageError(f"unsupported storage URL {redact_url(url)!r}; use one of {known}")
        if scheme not in self._built:
            self._built[scheme] = self._factories[scheme]()
        return self._built[scheme]

    def download(self, url: str, dest: Path) -> int:
        return self.store_for(url).download(url, dest)

    def upload(self, src: Path, url: str) -> str:
        return self.store_for(url).upload(src, url)

    def size(self, url: str) -> int:
        return self.store_for(url).size(url)

    def local_path(self, url: str) -> Path | None:
        return self.store_for(url).local_path(url)

    def delete(self, url: str) -> None:
        self.store_for(url).delete(url)

    def ping(self, url: str | None = None) -> None:
        if url is not None:
            self.store_for(url).ping(url)
