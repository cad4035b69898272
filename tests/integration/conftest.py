"""The contract suites' real servers, shared with the integration tests."""

from tests.contract.conftest import (  # noqa: F401 - fixtures
    clean_postgres,
    gcs_emulator,
    gcs_proxy,
    postgres_dsn,
    s3_proxy,
    s3_server,
)
