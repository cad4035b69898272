"""The tests' PostgreSQL server of their own (training_agent.testing.pg_server, shared with
bench/faults.py): skipped, saying why, where the server binaries are missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from training_agent.testing.pg_server import PgServer, PgUnavailable

__all__ = ["PgServer", "pg_server"]


@contextmanager
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.remove()
