"""The Postgres migrations: the Supabase SQL, applied once, safely from several agents at once."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from training_agent.adapters.metadata.migrate import migration_files
from training_agent.adapters.metadata.postgres import PostgresMetadataRepo


@pytest.fixture
def empty_database(postgres_dsn: str):
    name = f"training_agent_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as server:
        server.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(postgres_dsn, dbname=name)
    with psycopg.connect(postgres_dsn, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_are_the_supabase_folder():
    names = [f.name for f in migration_files("postgres")]
    assert names and all(n[:14].isdigit() and n[14] == "_" for n in names)  # CLI's naming


def test_agents_starting_together_apply_each_migration_once(empty_database: str):
    applied: list[list[str]] = []
    barrier = threading.Barrier(3)

    def start() -> None:
        barrier.wait()
        repo = PostgresMetadataRepo(empty_database, migrate=False, pool_size=1)
        applied.append(repo.migrate())
        repo.close()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(map(len, applied)) == [0, 0, len(migration_files("postgres"))]
    with psycopg.connect(empty_database) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        functions = {r[0] for r in conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")}
    assert tables == {"projects", "datasets", "models", "agent_logs", "training_jobs",
                      "schema_migrations"}
    assert functions >= {"claim_training_job", "claim_next_training_job", "save_training_job",
                         "record_trained_model"}


def test_the_sql_is_idempotent_when_applied_twice_by_hand(empty_database: str):
    # `supabase db push` then `training-agent db migrate`: both routes may apply it
    with psycopg.connect(empty_database) as conn:
        for _ in range(2):
            for f in migration_files("postgres"):
                conn.execute(f.read_text())
    repo = PostgresMetadataRepo(empty_database, pool_size=1)
    repo.ping()
    repo.close()
