"""Stores for the contract suites, each on a real server where it has one: a throwaway
PostgreSQL database, a PostgREST stand-in on that database, the GCS emulator, moto's S3."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import respx
from psycopg.conninfo import make_conninfo

from training_agent.adapters.blobstore.gcs import GcsBlobStore
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.blobstore.memory import InMemoryBlobStore
from training_agent.adapters.blobstore.s3 import S3BlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.metadata.postgres import PostgresMetadataRepo, describe_dsn
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo
from training_agent.domain.ports import BlobStore, MetadataRepo

from .postgrest_fake import FakePostgrest
from .servers import FaultProxy, free_port

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SUPABASE_TEST_URL = "http://supabase.test"
TABLES = "projects, datasets, models, agent_logs, training_jobs"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A migrated database created for this run on TEST_DATABASE_URL's server, dropped after."""
    admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    try:
        server = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):  # CI starts the server: a missing one is a failure there
            pytest.fail(f"no PostgreSQL server at {describe_dsn(admin)} in CI ({exc})")
        pytest.skip(f"no PostgreSQL server at {describe_dsn(admin)}: start one (.ci/run does) "
                    f"or point TEST_DATABASE_URL at one ({exc})")
    name = f"training_agent_test_{uuid.uuid4().hex[:12]}"
    server.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(admin, dbname=name)
    try:
        PostgresMetadataRepo(dsn, pool_size=1).close()  # applies the migrations
        yield dsn
    finally:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.close()


@pytest.fixture
def clean_postgres(postgres_dsn: str) -> str:
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return postgres_dsn


@pytest.fixture
def fake_postgrest(clean_postgres: str) -> Iterator[FakePostgrest]:
    fake = FakePostgrest(clean_postgres)
    with respx.mock(assert_all_called=False) as router:
        router.route(host="supabase.test").mock(side_effect=fake)
        yield fake


METADATA_STORES = ["memory", "sqlite", "postgres", "supabase"]


@pytest.fixture(params=METADATA_STORES)
def open_repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], MetadataRepo]]:
    """Opens a MetadataRepo on one store; each call is another client (another agent) of it."""
    opened: list[MetadataRepo] = []
    if request.param == "memory":
        shared = InMemoryMetadataRepo()
        yield lambda: shared
        return
    if request.param == "sqlite":
        def factory() -> MetadataRepo:
            return SqliteMetadataRepo(tmp_path / "store.sqlite3")
    elif request.param == "postgres":
        dsn = request.getfixturevalue("clean_postgres")

        def factory() -> MetadataRepo:
            opened.append(PostgresMetadataRepo(dsn, migrate=False, pool_size=2))
            return opened[-1]
    else:
        request.getfixturevalue("fake_postgrest")

        def factory() -> MetadataRepo:
            return SupabaseMetadataRepo(SUPABASE_TEST_URL, "service-role-key", backoff=0.0)
    yield factory
    for repo in opened:
        repo.close()  # type: ignore[attr-defined]


@pytest.fixture
def repo(open_repo: Callable[[], MetadataRepo]) -> MetadataRepo:
    return open_repo()


# ---- blob stores ------------------------------------------------------------------------------
BUCKET = "training-agent-test"
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class BlobCase:
    """A BlobStore under test, how its URLs look, and the proxy in front of its server."""

    name: str
    store: BlobStore
    prefix: str  # URL of the test's folder, without a trailing slash
    proxy: FaultProxy | None = None
    denied: tuple[int, bytes, str] | None = None  # the store's real 403 answer
    unavailable: tuple[int, bytes, str] | None = None  # and its real 503

    def url(self, key: str) -> str:
        return f"{self.prefix}/{key}"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=False, default_bucket=BUCKET,
                           data_dir=str(tmp_path_factory.mktemp("gcs-emulator")))
    server.start()
    yield "127.0.0.1", port
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[tuple[str, int]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield host, port
    server.stop()


@pytest.fixture(scope="session")
def gcs_proxy(gcs_emulator: tuple[str, int]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs_emulator)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def s3_proxy(s3_server: tuple[str, int]) -> Iterator[FaultProxy]:
    import boto3

    proxy = FaultProxy(s3_server)
    boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket=BUCKET)
    yield proxy
    proxy.close()


GCS_DENIED = (403, json.dumps({"error": {
    "code": 403, "message": "anonymous caller does not have storage.objects.get access to the "
    "Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it "
    "may not exist).", "errors": [{"domain": "global", "reason": "forbidden", "message": "..."}],
}}).encode(), "application/json; charset=UTF-8")
GCS_UNAVAILABLE = (503, json.dumps({"error": {
    "code": 503, "message": "We encountered an internal error. Please try again.",
    "errors": [{"domain": "global", "reason": "backendError", "message": "..."}],
}}).encode(), "application/json; charset=UTF-8")
S3_DENIED = (403, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
             b"<Message>Access Denied</Message><RequestId>R</RequestId><HostId>H</HostId>"
             b"</Error>", "application/xml")
S3_UNAVAILABLE = (503, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                  b"<Message>Please reduce your request rate.</Message><RequestId>R</RequestId>"
                  b"</Error>", "application/xml")


def gcs_store(emulator_url: str) -> GcsBlobStore:
    return GcsBlobStore(emulator_host=emulator_url, chunk_size=1024 * 1024,
                        retry_initial_delay=0.05, retry_timeout=3.0)


def s3_store(endpoint_url: str) -> S3BlobStore:
    return S3BlobStore(endpoint_url=endpoint_url, part_size=5 * 1024 * 1024, max_attempts=3)


BLOB_STORES = ["memory", "local", "gcs", "s3"]


def _blob_case(name: str, request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> BlobCase:
    folder = uuid.uuid4().hex
    if name == "memory":
        return BlobCase(name, InMemoryBlobStore(), f"mem://{BUCKET}/{folder}")
    if name == "local":
        return BlobCase(name, LocalBlobStore(), (tmp_path / "store").as_uri())
    if name == "gcs":
        proxy = request.getfixturevalue("gcs_proxy")
        proxy.reset()
        return BlobCase(name, gcs_store(proxy.url), f"gs://{BUCKET}/{folder}", proxy,
                        GCS_DENIED, GCS_UNAVAILABLE)
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    proxy = request.getfixturevalue("s3_proxy")
    proxy.reset()
    return BlobCase(name, s3_store(proxy.url), f"s3://{BUCKET}/{folder}", proxy,
                    S3_DENIED, S3_UNAVAILABLE)


@pytest.fixture(params=BLOB_STORES)
def blob_case(request: pytest.FixtureRequest, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> BlobCase:
    return _blob_case(request.param, request, tmp_path, monkeypatch)


@pytest.fixture(params=["gcs", "s3"])
def cloud_case(request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> BlobCase:
    return _blob_case(request.param, request, tmp_path, monkeypatch)
