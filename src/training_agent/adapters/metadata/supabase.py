"""Supabase MetadataRepo: the same store through PostgREST (supabase-py).

Plain reads and inserts go to the tables; the atomic operations are the SQL functions of the
migrations, called by RPC, so they are exactly the Postgres adapter's. Transient failures (5xx,
429, timeouts, dropped connections) are retried with backoff; each retry is safe because ids
are chosen by the client and the functions recognise a request they have already done.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from postgrest.types import ReturnMethod
from supabase import ClientOptions, create_client

from training_agent.domain.errors import (
    Conflict,
    DatasetNotFound,
    JobNotFound,
    MetadataError,
    MetadataPermissionDenied,
    ProjectNotFound,
)
from training_agent.domain.models import (
    Dataset,
    LogEntry,
    ModelRecord,
    Project,
    ProjectStatus,
    TrainingJob,
    new_id,
    utcnow,
)
from training_agent.domain.ports import MetadataRepo

from .rows import ACTIVE_STATE_VALUES, is_uuid

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


class SupabaseMetadataRepo(MetadataRepo):
    def __init__(self, url: str, key: str, *, timeout: float = 30.0, attempts: int = 4,
                 backoff: float = 0.5, http: httpx.Client | None = None) -> None:
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

    def _run(self, what: str, table: str, request: Callable[[], Any], *,
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

    # ---- generic reads and writes -------------------------------------------------------------
    def _insert(self, table: str, row: dict[str, Any]) -> None:
        self._run("insert", table, lambda: self._client.table(table).insert(
            row, returning=ReturnMethod.minimal), insert=True)

    def _select(self, table: str, *, order: str = "created_at", desc: bool = False,
                limit: int | None = None, **eq: str) -> list[dict[str, Any]]:
        def request() -> Any:
            query = self._client.table(table).select("*")
            for column, value in eq.items():
                query = query.eq(column, value)
            query = query.order(order, desc=desc)
            return query.limit(limit) if limit is not None else query
        return list(self._run("select", table, request))

    def _rpc(self, function: str, table: str, params: dict[str, Any],
             not_found: Exception | None = None) -> Any:
        return self._run(f"rpc {function}", table,
                         lambda: self._client.rpc(function, params), not_found=not_found)

    # ---- projects and datasets ----------------------------------------------------------------
    def add_project(self, project: Project) -> Project:
        self._insert("projects", project.model_dump(mode="json"))
        return project

    def get_project(self, project_id: str) -> Project:
        rows = self._select("projects", limit=1, id=project_id) if is_uuid(project_id) else []
        if not rows:
            raise ProjectNotFound(project_id)
        return Project.model_validate(rows[0])

    def list_projects(self, limit: int, offset: int = 0) -> list[tuple[Project, TrainingJob | None]]:
        projects = self._run("select", "projects", lambda: self._client.table("projects").select(
            "*").order("created_at", desc=True).order("id", desc=True).limit(limit).offset(offset))
        ids = [p["id"] for p in projects]
        jobs: dict[str, dict[str, Any]] = {}
        if ids:  # every job of the page's projects, newest first: the first of each is its latest
            for row in self._run("select", "training_jobs", lambda: self._client.table(
                    "training_jobs").select("*").in_("project_id", ids).order(
                    "created_at", desc=True).order("id", desc=True)):
                jobs.setdefault(row["project_id"], row)
        return [(Project.model_validate(p), TrainingJob.model_validate(jobs[p["id"]])
                 if p["id"] in jobs else None) for p in projects]

    def set_project_status(self, project_id: str, status: ProjectStatus) -> None:
        changes = {"status": status.value, "updated_at": utcnow().isoformat()}
        rows = self._run("update", "projects", lambda: self._client.table("projects").update(
            changes).eq("id", project_id)) if is_uuid(project_id) else []
        if not rows:
            raise ProjectNotFound(project_id)

    def add_dataset(self, dataset: Dataset) -> Dataset:
        self._insert("datasets", dataset.model_dump(mode="json"))
        return dataset

    def set_dataset_classes(self, dataset_id: str, num_classes: int) -> None:
        rows = self._run("update", "datasets", lambda: self._client.table("datasets").update(
            {"num_classes": num_classes}).eq("id", dataset_id)) if is_uuid(dataset_id) else []
        if not rows:
            raise DatasetNotFound(dataset_id)

    def latest_dataset(self, project_id: str) -> Dataset:
        rows = self._select("datasets", desc=True, limit=1, project_id=project_id) if is_uuid(
            project_id) else []
        if not rows:
            raise DatasetNotFound(project_id)
        return Dataset.model_validate(rows[0])

    # ---- jobs ---------------------------------------------------------------------------------
    def claim_job(self, job: TrainingJob, allowed: frozenset[ProjectStatus] | None) -> TrainingJob:
        if not is_uuid(job.project_id):
            raise ProjectNotFound(job.project_id)
        states = sorted(s.value for s in allowed) if allowed is not None else None
        rows = self._rpc("claim_training_job", "training_jobs",
                         {"p_job": job.model_dump(mode="json"), "p_allowed": states},
                         not_found=ProjectNotFound(job.project_id))
        return TrainingJob.model_validate(rows[0])

    def claim_next_pending(self, worker_id: str) -> TrainingJob | None:
        rows = self._rpc("claim_next_training_job", "training_jobs",
                         {"p_worker_id": worker_id, "p_job_id": new_id()})
        return TrainingJob.model_validate(rows[0]) if rows else None

    def get_job(self, job_id: str) -> TrainingJob:
        rows = self._select("training_jobs", limit=1, id=job_id) if is_uuid(job_id) else []
        if not rows:
            raise JobNotFound(f"job {job_id}")
        return TrainingJob.model_validate(rows[0])

    def latest_job(self, project_id: str) -> TrainingJob | None:
        rows = self._select("training_jobs", desc=True, limit=1, project_id=project_id) if (
            is_uuid(project_id)) else []
        return TrainingJob.model_validate(rows[0]) if rows else None

    def job_for_idempotency_key(self, key: str) -> TrainingJob | None:
        rows = self._select("training_jobs", limit=1, idempotency_key=key)
        return TrainingJob.model_validate(rows[0]) if rows else None

    def save_job(self, job: TrainingJob) -> bool:
        return bool(self._rpc("save_training_job", "training_jobs",
                              {"p_job": job.model_dump(mode="json")},
                              not_found=JobNotFound(f"job {job.id}")))

    def touch_job(self, job_id: str, worker_id: str | None = None) -> bool:
        if not is_uuid(job_id):
            raise JobNotFound(f"job {job_id}")
        return bool(self._rpc("touch_training_job", "training_jobs",
                              {"p_job_id": job_id, "p_worker_id": worker_id},
                              not_found=JobNotFound(f"job {job_id}")))

    def active_jobs(self) -> list[TrainingJob]:
        rows = self._run("select", "training_jobs", lambda: self._client.table(
            "training_jobs").select("*").in_("state", list(ACTIVE_STATE_VALUES)).order(
            "created_at"))
        return [TrainingJob.model_validate(r) for r in rows]

    def record_model(self, model: ModelRecord, job: TrainingJob) -> None:
        self._rpc("record_trained_model", "models", {"p_model": model.model_dump(mode="json"),
                                                     "p_job": job.model_dump(mode="json")})

    def list_models(self, project_id: str) -> list[ModelRecord]:
        rows = self._select("models", project_id=project_id) if is_uuid(project_id) else []
        return [ModelRecord.model_validate(r) for r in rows]

    # ---- logs ---------------------------------------------------------------------------------
    def add_log(self, entry: LogEntry) -> None:
        # the identity is the database's; request_id (unique) makes a retry after a lost
        # answer a duplicate that is refused, not a second row
        self._insert("agent_logs", {**entry.model_dump(mode="json", exclude={"id"}),
                                    "request_id": new_id()})

    def recent_logs(self, project_id: str, limit: int = 20) -> list[LogEntry]:
        rows = self._select("agent_logs", order="id", desc=True, limit=limit,
                            project_id=project_id) if is_uuid(project_id) else []
        return [LogEntry.model_validate(r) for r in rows]

    def ping(self) -> None:
        self._run("select", "projects",
                  lambda: self._client.table("projects").select("id").limit(1))
