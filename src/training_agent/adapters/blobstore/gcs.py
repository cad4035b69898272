"""Google Cloud Storage BlobStore for `gs://bucket/key` and
`https://storage.googleapis.com/bucket/key` URLs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import google.auth.exceptions
import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from training_agent.domain.errors import BlobNotFound, StorageError, StoragePermissionDenied
from training_agent.domain.ports import BlobStore
from training_agent.domain.urls import key_url_problem, redact_url

from .verify import MiB, check_digest, check_size, partial_file

LOOKUP_SECONDS = 10.0


def parse_gcs_url(url: str) -> tuple[str, str]:
    if url.startswith("gs://"):
        if problem := key_url_problem(url):
            raise StorageError(problem)
        bucket, _, key = url[len("gs://"):].partition("/")
    else:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != ("https", "storage.googleapis.com"):
            raise StorageError(f"not a GCS URL: {redact_url(url)}")
        bucket, _, key = unquote(parts.path.lstrip("/")).partition("/")
    if not bucket or not key:
        raise StorageError(f"a GCS URL needs a bucket and an object name: {redact_url(url)}")
    return bucket, key


class GcsBlobStore(BlobStore):
    """Credentials: `credentials_file` (GOOGLE_APPLICATION_CREDENTIALS), else Google's default
    chain; with `emulator_host` (STORAGE_EMULATOR_HOST), anonymous against the emulator."""

    def __init__(self, *, project: str | None = None, credentials_file: str | None = None,
                 emulator_host: str | None = None, chunk_size: int = 8 * MiB,
                 retry_timeout: float = 120.0, retry_initial_delay: float = 1.0,
                 client: storage.Client | None = None) -> None:
        self.project = project
        self.credentials_file = credentials_file
        self.emulator_host = emulator_host
        self.chunk_size = chunk_size  # resumable upload chunks: what an upload holds in memory
        # 429, 5xx and dropped connections, with exponential backoff and jitter
        self.retry: Retry = DEFAULT_RETRY.with_delay(
            initial=retry_initial_delay, maximum=max(retry_initial_delay, 30.0)).with_timeout(
            retry_timeout)
        self._client = client

    def client(self) -> storage.Client:
        if self._client is None:
            with self._errors("Google Cloud Storage", "connecting to"):
                self._client = self._make_client()
        return self._client

    def _make_client(self) -> storage.Client:
        if self.emulator_host:
            endpoint = self.emulator_host
            if "://" not in endpoint:
                endpoint = f"http://{endpoint}"
            return storage.Client(project=self.project or "emulator",
                                  credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": endpoint})
        if self.credentials_file:
            return storage.Client.from_service_account_json(self.credentials_file,
                                                            project=self.project)
        return storage.Client(project=self.project)

    @contextmanager
    def _errors(self, where: str, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except gexc.NotFound as exc:
            raise BlobNotFound(f"no object at {where}") from exc
        except (gexc.Forbidden, gexc.Unauthorized) as exc:
            raise StoragePermissionDenied(
                f"permission denied {doing} {where}: {exc.message}") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            raise StoragePermissionDenied(
                f"no usable Google credentials {doing} {where} ({type(exc).__name__}); set "
                "GOOGLE_APPLICATION_CREDENTIALS or configure the default chain") from exc
        except InvalidResponse as exc:
            status = getattr(exc.response, "status_code", None)
            if status in (401, 403):
                raise StoragePermissionDenied(f"permission denied {doing} {where}") from exc
            raise StorageError(f"GCS failed {doing} {where}: HTTP {status}") from exc
        except gexc.GoogleAPICallError as exc:
            raise StorageError(f"GCS failed {doing} {where}: {exc.code} {exc.message}") from exc
        except (gexc.RetryError, DataCorruption, requests.RequestException, OSError) as exc:
            raise StorageError(f"GCS failed {doing} {where}: {type(exc).__name__}: "
                               f"{exc}") from exc

    def download(self, url: str, dest: Path) -> int:
        bucket, key = parse_gcs_url(url)
        where = f"gs://{bucket}/{key}"
        with self._errors(where, "reading"):
            blob = self.client().bucket(bucket).get_blob(key, retry=self.retry)
            if blob is None:
                raise BlobNotFound(f"no object at {where}")
            with partial_file(dest) as tmp:
                # streamed to disk; pinned to the generation whose size and hashes we check
                blob.download_to_filename(str(tmp), if_generation_match=blob.generation,
                                          retry=self.retry)
                size = check_size(tmp, blob.size, where)
                self._verify(tmp, blob, where)
        return size

    def upload(self, src: Path, url: str) -> str:
        bucket, key = parse_gcs_url(url)
        where = f"gs://{bucket}/{key}"
        if not src.is_file():
            raise StorageError(f"nothing to upload at {src}")
        with self._errors(where, "writing"):
            blob = self.client().bucket(bucket).blob(key, chunk_size=self.chunk_size)
            blob.upload_from_filename(str(src), checksum="crc32c", retry=self.retry)
            blob.reload(retry=self.retry)
            check_size(src, blob.size, where)
            self._verify(src, blob, where)
        return url

    def size(self, url: str) -> int:
        bucket, key = parse_gcs_url(url)
        where = f"gs://{bucket}/{key}"
        with self._errors(where, "looking up"):
            # a check made while someone waits (project create): seconds, not the long retry
            blob = self.client().bucket(bucket).get_blob(
                key, retry=self.retry.with_timeout(LOOKUP_SECONDS), timeout=LOOKUP_SECONDS)
            if blob is None:
                raise BlobNotFound(f"no object at {where}")
            return int(blob.size or 0)

    def delete(self, url: str) -> None:
        bucket, key = parse_gcs_url(url)
        where = f"gs://{bucket}/{key}"
        try:
            with self._errors(where, "deleting"):
                self.client().bucket(bucket).blob(key).delete(retry=self.retry)
        except BlobNotFound:
            pass  # already gone

    @staticmethod
    def _verify(path: Path, blob: storage.Blob, where: str) -> None:
        # crc32c is always there (composite objects have no md5)
        if blob.crc32c:
            check_digest(path, "crc32c", base64.b64decode(blob.crc32c), where)
        elif blob.md5_hash:
            check_digest(path, "md5", base64.b64decode(blob.md5_hash), where)

    def ping(self, url: str | None = None) -> None:
        """With a URL: list at most one object under its prefix (objects.list), so a missing
        bucket or missing permission shows, within LOOKUP_SECONDS."""
        if url is None:
            with self._errors("Google Cloud Storage", "reaching"):
                self.client()
            return
        bucket, prefix = parse_gcs_url(url.rstrip("/") + "/.")
        prefix = prefix[:-1]
        where = f"gs://{bucket}/{prefix}"
        try:
            with self._errors(where, "listing"):
                list(self.client().list_blobs(
                    bucket, prefix=prefix, max_results=1, timeout=LOOKUP_SECONDS,
                    retry=self.retry.with_timeout(LOOKUP_SECONDS)))
        except BlobNotFound:
            raise StorageError(f"bucket gs://{bucket} does not exist") from None
