"""Stores for the contract suites, each on a real server where it has one: a throwaway
PostgreSQL database, a PostgREST stand-in on that database, the GCS emulator, moto's S3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import respx
from psycopg.conninfo import make_conninfo

from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.metadata.postgres import PostgresMetadataRepo, describe_dsn
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo
from training_agent.domain.ports import MetadataRepo

from .postgrest_fake import FakePostgrest

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
