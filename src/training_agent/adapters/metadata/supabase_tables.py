"""The PostgREST calls under SupabaseMetadataRepo: the supabase-py client, retries with backoff,
and PostgREST's failures as the domain's errors."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from postgrest.types import ReturnMethod
from supabase import ClientOptions, create_client

from training_agent.domain.errors import Conflict, MetadataError, MetadataPermissionDenied

# PostgREST's answer when the schema lacks what we ask for: the migrations were not applied.
_MISSING_SCHEMA = {"PGRST202", "PGRST205", "42P01", "42883"}


class PostgrestFailure(Exception):
    """A non-2xx answer, with its status and PostgREST's error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.code = str(body.get("code") or "")
        self.message = str(body.get("message") or f"HTTP {status}")
        super().__init__(f"HTTP {status} {self.code}: {self.message}".strip())


def _raise_for_status(response: httpx.Response) -> None:
    # supabase-py drops the HTTP status from its errors; this hook keeps it
    if response.is_success:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = {}
    raise PostgrestFailure(response.status_code, body if isinstance(body, dict) else {})


def _transient(exc: Exception) -> bool:
    if isinstance(exc, PostgrestFailure):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


class SupabaseTables:
    """A Supabase project's tables and SQL functions: each request is retried while it fails
    transiently (5xx, 429, timeouts, dropped connections), and a failure comes out as the
    domain's error."""

    def __init__(self, url: str, key: str, *, timeout: float, attempts: int, backoff: float,
                 http: httpx.Client | None) -> None:
        self.url = url.rstrip("/")
        self.attempts = attempts
        self.backoff = backoff
        http = http or httpx.Client(timeout=timeout, follow_redirects=True)
        hooks = http.event_hooks
        http.event_hooks = {**hooks, "response": [*hooks["response"], _raise_for_status]}
        # our own retries, once: supabase-py's would only cover GETs, and nest inside ours
        options = ClientOptions(httpx_client=http, postgrest_client_retry=False,
                                auto_refresh_token=False, persist_session=False)
        self._client = create_client(self.url, key, options)

    def table(self, name: str) -> Any:
        """A fresh request builder on the table, for `run`."""
        return self._client.table(name)

    def run(self, what: str, table: str, request: Callable[[], Any], *,
            insert: bool = False, not_found: Exception | None = None) -> Any:
        """Executes `request()` (a fresh builder each attempt) and returns the response data."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                return request().execute().data
            except (PostgrestFailure, httpx.HTTPError) as exc:
                if not _transient(exc):
                    if insert and attempt and getattr(exc, "code", "") == "23505":
                        return None  # an earlier attempt landed before its answer was lost
                    raise self._domain_error(exc, what, table, not_found) from exc
                last = exc
        raise MetadataError(f"supabase {self.url}: {what} on {table} failed after "
                            f"{self.attempts} attempts: {last}", unreachable=True) from last

    def _domain_error(self, exc: Exception, what: str, table: str,
                      not_found: Exception | None) -> Exception:
        if not isinstance(exc, PostgrestFailure):
            return MetadataError(f"supabase {self.url}: {what} on {table} failed: {exc}")
        if exc.status in (401, 403) or exc.code == "42501":
            return MetadataPermissionDenied(
                f"supabase denied {what} on table {table} (HTTP {exc.status}: {exc.message}); "
                "SUPABASE_KEY must be the service-role key")
        if exc.code == "PT404" and not_found is not None:
            return not_found
        if exc.code in ("PT409", "23505"):
            return Conflict(exc.message)
        if exc.code in _MISSING_SCHEMA:
            return MetadataError(f"supabase {self.url}: {table} is missing ({exc.message}); "
                                 "apply the migrations in supabase/migrations (docs/cloud.md)")
        return MetadataError(f"supabase {self.url}: {what} on {table} failed: {exc}")

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.run("insert", table, lambda: self._client.table(table).insert(
            row, returning=ReturnMethod.minimal), insert=True)

    def select(self, table: str, *, order: str = "created_at", desc: bool = False,
               limit: int | None = None, **eq: str) -> list[dict[str, Any]]:
        def request() -> Any:
            query = self._client.table(table).select("*")
            for column, value in eq.items():
                query = query.eq(column, value)
            query = query.order(order, desc=desc)
            return query.limit(limit) if limit is not None else query
        return list(self.run("select", table, request))

    def update(self, table: str, changes: dict[str, Any], row_id: str) -> Any:
        """Updates the row with this id; returns the rows updated (none: no such row)."""
        return self.run("update", table, lambda: self._client.table(table).update(
            changes).eq("id", row_id))

    def rpc(self, function: str, table: str, params: dict[str, Any],
            not_found: Exception | None = None) -> Any:
        return self.run(f"rpc {function}", table,
                        lambda: self._client.rpc(function, params), not_found=not_found)
