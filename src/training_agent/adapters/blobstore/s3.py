"""Amazon S3 (and S3-compatible: MinIO, R2, ...) BlobStore for `s3://bucket/key` URLs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bexc
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from training_agent.domain.errors import BlobNotFound, StorageError, StoragePermissionDenied
from training_agent.domain.ports import BlobStore
from training_agent.domain.urls import key_url_problem, redact_url

from .verify import MiB, check_digest, check_size, partial_file

_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_DENIED = {"401", "403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "ExpiredToken", "InvalidToken", "AllAccessDisabled"}


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise StorageError(f"not an S3 URL: {redact_url(url)}")
    if problem := key_url_problem(url):
        raise StorageError(problem)
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise StorageError(f"an S3 URL needs a bucket and a key: {redact_url(url)}")
    return bucket, key


def multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives an unencrypted multipart upload: md5 of the parts' md5s, '-', count."""
    digests = []
    with path.open("rb") as f:
        while part := f.read(part_size):
            digests.append(hashlib.md5(part).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


class S3BlobStore(BlobStore):
    """Credentials and region come from boto3's chain (AWS_* variables, profiles, instance
    roles); `endpoint_url` (S3_ENDPOINT_URL) points at an S3-compatible server."""

    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None,
                 part_size: int = 8 * MiB, max_attempts: int = 5,
                 client: Any | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        # parts in flight bound the memory a transfer takes: part_size x max_concurrency
        self.transfer = TransferConfig(multipart_threshold=part_size,
                                       multipart_chunksize=part_size, max_concurrency=4,
                                       max_io_queue=32)
        # "standard" retries 429, 5xx, throttling and connection errors with backoff and jitter
        self.config = Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                             connect_timeout=10, read_timeout=60,
                             s3={"addressing_style": "path" if endpoint_url else "auto"})
        self._client = client
        self._lookup_client: Any | None = None

    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                config=self.config)
        return self._client

    @contextmanager
    def _errors(self, where: str, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, bexc.ClientError):
                raise self._client_error(cause, where, doing) from exc
            raise StorageError(f"S3 failed {doing} {where}: {exc}") from exc
        except bexc.ClientError as exc:
            raise self._client_error(exc, where, doing) from exc
        except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as exc:
            raise StoragePermissionDenied(
                f"no AWS credentials {doing} {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role") from exc
        except (bexc.BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 failed {doing} {where}: {type(exc).__name__}: "
                               f"{exc}") from exc

    @staticmethod
    def _client_error(exc: bexc.ClientError, where: str, doing: str) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or code
        if code in _NOT_FOUND or status == 404:
            return BlobNotFound(f"no object at {where}")
        if code in _DENIED or status in (401, 403):
            return StoragePermissionDenied(f"permission denied {doing} {where}: {message}")
        return StorageError(f"S3 failed {doing} {where}: {code} {message}")

    def download(self, url: str, dest: Path) -> int:
        bucket, key = parse_s3_url(url)
        where = f"s3://{bucket}/{key}"
        with self._errors(where, "reading"):
            head = self.client().head_object(Bucket=bucket, Key=key)
            with partial_file(dest) as tmp:
                # ranged GETs streamed to disk; on a versioned bucket, of the version we checked
                pin = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
                self.client().download_file(bucket, key, str(tmp), Config=self.transfer,
                                            ExtraArgs=pin)
                size = check_size(tmp, head["ContentLength"], where)
                self._verify(tmp, head, where, bucket, key)
        return size

    def upload(self, src: Path, url: str) -> str:
        bucket, key = parse_s3_url(url)
        where = f"s3://{bucket}/{key}"
        if not src.is_file():
            raise StorageError(f"nothing to upload at {src}")
        with self._errors(where, "writing"):
            self.client().upload_file(str(src), bucket, key, Config=self.transfer)
            head = self.client().head_object(Bucket=bucket, Key=key)
            check_size(src, head["ContentLength"], where)
            self._verify(src, head, where, bucket, key)
        return url

    def size(self, url: str) -> int:
        bucket, key = parse_s3_url(url)
        where = f"s3://{bucket}/{key}"
        with self._errors(where, "looking up"):
            head = self.lookup_client().head_object(Bucket=bucket, Key=key)
            return int(head["ContentLength"])

    def lookup_client(self) -> Any:
        """A client for checks made while someone waits (project create): one retry and short
        timeouts, not the transfers' patient policy. The injected client when one was given."""
        if self._lookup_client is None:
            self._lookup_client = self._client or boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                config=self.config.merge(Config(retries={"max_attempts": 2, "mode": "standard"},
                                                connect_timeout=5, read_timeout=10)))
        return self._lookup_client

    def delete(self, url: str) -> None:
        bucket, key = parse_s3_url(url)
        with self._errors(f"s3://{bucket}/{key}", "deleting"):
            self.client().delete_object(Bucket=bucket, Key=key)  # absent: no error in S3

    def _verify(self, path: Path, head: dict[str, Any], where: str, bucket: str,
                key: str) -> None:
        """Checks the file against the object's ETag where that is a content hash: the md5 of
        a plain upload, or of the parts of a multipart one (SSE-KMS ETags are not hashes)."""
        etag = str(head.get("ETag", "")).strip('"')
        if not etag or head.get("ServerSideEncryption") == "aws:kms":
            return
        if "-" not in etag:
            if re.fullmatch(r"[0-9a-f]{32}", etag):  # some S3-compatible stores use other tags
                check_digest(path, "md5", bytes.fromhex(etag), where)
            return
        # the first part's size is the part size the uploader chose
        part = self.client().head_object(Bucket=bucket, Key=key, PartNumber=1)
        expected = multipart_etag(path, int(part["ContentLength"]))
        if expected != etag:
            raise StorageError(f"{where}: multipart ETag mismatch (local {expected}, store "
                               f"{etag}): the transfer was corrupted")

    def ping(self, url: str | None = None) -> None:
        """With a URL: HEAD its bucket (s3:ListBucket), so a missing bucket or missing
        permission shows, with the lookups' short timeouts."""
        if url is None:
            with self._errors("S3", "reaching"):
                self.client()
            return
        bucket, _ = parse_s3_url(url.rstrip("/") + "/.")
        try:
            with self._errors(f"s3://{bucket}", "reaching"):
                self.lookup_client().head_bucket(Bucket=bucket)
        except BlobNotFound:
            raise StorageError(f"bucket s3://{bucket} does not exist") from None
