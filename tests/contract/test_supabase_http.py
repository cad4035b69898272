"""The Supabase adapter at the HTTP boundary: the exact PostgREST requests supabase-py sends, and
PostgREST's (and Supabase's gateway's) real error answers mapped to the domain's errors."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo
from training_agent.domain.errors import (
    MetadataError,
    MetadataPermissionDenied,
    ProjectNotFound,
)
from training_agent.domain.models import (
    STARTABLE,
    LogEntry,
    Project,
    ProjectStatus,
    TrainingJob,
    new_id,
)

URL = "https://abcd.supabase.co"
KEY = "service-role-secret-key"
PID = new_id()


@pytest.fixture
def api():
    with respx.mock(base_url=f"{URL}/rest/v1", assert_all_called=True) as router:
        yield router


@pytest.fixture
def repo() -> SupabaseMetadataRepo:
    return SupabaseMetadataRepo(URL, KEY, backoff=0.0)


def sent(route: respx.Route, n: int = -1) -> httpx.Request:
    return route.calls[n].request


def test_get_project_request(api, repo):
    row = Project(id=PID, name="cats").model_dump(mode="json")
    route = api.get("/projects").respond(200, json=[row])
    assert repo.get_project(PID).name == "cats"
    req = sent(route)
    assert req.url.params.multi_items() == [
        ("select", "*"), ("id", f"eq.{PID}"), ("order", "created_at.asc"), ("limit", "1")]
    assert req.headers["apikey"] == KEY and req.headers["authorization"] == f"Bearer {KEY}"


def test_missing_row_is_not_found(api, repo):
    api.get("/projects").respond(200, json=[])
    with pytest.raises(ProjectNotFound):
        repo.get_project(PID)


def test_insert_request(api, repo):
    route = api.post("/projects").respond(201)
    project = repo.add_project(Project(name="cats", training_config={"epochs": 2}))
    req = sent(route)
    assert req.headers["prefer"] == "return=minimal"
    body = json.loads(req.content)
    assert body["id"] == project.id and body["training_config"] == {"epochs": 2}
    assert body["status"] == "pending_training" and body["created_at"].endswith("Z")


def test_log_insert_leaves_the_identity_to_the_database(api, repo):
    route = api.post("/agent_logs").respond(201)
    repo.add_log(LogEntry(project_id=PID, level="error", message="boom", details={"step": "x"}))
    assert "id" not in json.loads(sent(route).content)


def test_status_update_request(api, repo):
    route = api.patch("/projects").respond(200, json=[{"id": PID}])
    repo.set_project_status(PID, ProjectStatus.PENDING_EVALUATION)
    req = sent(route)
    assert req.url.params.multi_items() == [("id", f"eq.{PID}")]
    assert req.headers["prefer"] == "return=representation"
    assert json.loads(req.content)["status"] == "pending_evaluation"


def test_status_update_of_a_missing_project(api, repo):
    api.patch("/projects").respond(200, json=[])
    with pytest.raises(ProjectNotFound):
        repo.set_project_status(PID, ProjectStatus.TRAINING)


def test_claim_is_an_rpc(api, repo):
    job = TrainingJob(project_id=PID)
    route = api.post("/rpc/claim_training_job").respond(200, json=[job.model_dump(mode="json")])
    assert repo.claim_job(job, STARTABLE) == job
    body = json.loads(sent(route).content)
    assert body == {"p_job": job.model_dump(mode="json"),
                    "p_allowed": ["pending_training", "training_cancelled", "training_failed"]}


def test_claim_conflict_is_postgrest_pt409(api, repo):
    api.post("/rpc/claim_training_job").respond(409, json={
        "code": "PT409", "details": None, "hint": None,
        "message": f"project {PID} already has an active job 1"})
    with pytest.raises(Exception, match="already has an active job") as caught:
        repo.claim_job(TrainingJob(project_id=PID), None)
    assert type(caught.value).__name__ == "Conflict"


def test_claim_of_a_missing_project_is_pt404(api, repo):
    api.post("/rpc/claim_training_job").respond(404, json={
        "code": "PT404", "details": None, "hint": None, "message": f"project {PID} not found"})
    with pytest.raises(ProjectNotFound):
        repo.claim_job(TrainingJob(project_id=PID), None)


# Bodies as PostgREST and Supabase's API gateway send them.
DENIED_TABLE = {"code": "42501", "details": None, "hint": None,
                "message": "permission denied for table projects"}
DENIED_ROW = {"code": "42501", "details": None, "hint": None,
              "message": 'new row violates row-level security policy for table "agent_logs"'}
BAD_KEY = {"message": "Invalid API key",
           "hint": "Double check your Supabase `anon` or `service_role` API key."}
DB_DOWN = {"code": "PGRST001", "details": "connection to server failed: Connection refused",
           "hint": None, "message": "Database client error. Retrying the connection."}


@pytest.mark.parametrize("status, body, call, table", [
    (401, DENIED_TABLE, lambda r: r.get_project(PID), "projects"),
    (403, DENIED_ROW, lambda r: r.add_log(LogEntry(project_id=PID, level="info", message="m")),
     "agent_logs"),
    (401, BAD_KEY, lambda r: r.get_project(PID), "projects"),
])
def test_permission_denied_names_the_table(api, repo, status, body, call, table):
    api.route(path__regex=rf"/{table}").respond(status, json=body)
    with pytest.raises(MetadataPermissionDenied, match=f"table {table}") as caught:
        call(repo)
    assert KEY not in str(caught.value)
    assert len(api.calls) == 1  # never retried


def test_5xx_is_retried_then_succeeds(api, repo):
    route = api.get("/projects")
    route.side_effect = [httpx.Response(503, json=DB_DOWN),
                         httpx.Response(502, text="<html>502 Bad Gateway</html>"),
                         httpx.Response(200, json=[Project(id=PID, name="x").model_dump(
                             mode="json")])]
    assert repo.get_project(PID).id == PID
    assert route.call_count == 3


def test_timeout_is_retried_then_succeeds(api, repo):
    route = api.post("/rpc/save_training_job")
    route.side_effect = [httpx.ReadTimeout("timed out"), httpx.Response(200, json=True)]
    assert repo.save_job(TrainingJob(project_id=PID)) is True
    assert route.call_count == 2


def test_an_insert_that_landed_before_its_answer_was_lost_is_not_an_error(api, repo):
    route = api.post("/projects")
    route.side_effect = [httpx.ConnectError("reset"), httpx.Response(409, json={
        "code": "23505", "details": f"Key (id)=({PID}) already exists.", "hint": None,
        "message": 'duplicate key value violates unique constraint "projects_pkey"'})]
    repo.add_project(Project(id=PID, name="x"))
    assert route.call_count == 2


def test_persistent_outage_becomes_a_clear_error(api, repo):
    route = api.get("/training_jobs").respond(503, json=DB_DOWN)
    with pytest.raises(MetadataError, match="training_jobs failed after 4 attempts.*503"):
        repo.active_jobs()
    assert route.call_count == 4


def test_missing_schema_points_at_the_migrations(api, repo):
    api.get("/projects").respond(404, json={
        "code": "PGRST205", "details": None, "hint": None,
        "message": "Could not find the table 'public.projects' in the schema cache"})
    with pytest.raises(MetadataError, match="apply the migrations"):
        repo.get_project(PID)


def test_a_log_row_whose_answer_was_lost_is_written_once(fake_postgrest, monkeypatch):
    # the first insert reaches the database, then its answer is lost (a timeout); the adapter
    # retries the same request: a real PostgREST on the real schema must not write it twice
    import psycopg

    from .conftest import SUPABASE_TEST_URL
    from .postgrest_fake import FakePostgrest

    answer = FakePostgrest.__call__
    lost: list[httpx.Request] = []

    def lose_first_log_answer(self, request: httpx.Request) -> httpx.Response:  # type: ignore[no-untyped-def]
        response = answer(self, request)
        if request.url.path.endswith("/agent_logs") and request.method == "POST" and not lost:
            lost.append(request)
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    monkeypatch.setattr(FakePostgrest, "__call__", lose_first_log_answer)
    repo = SupabaseMetadataRepo(SUPABASE_TEST_URL, "service-role-key", backoff=0.0)
    project = repo.add_project(Project(name="logs"))
    repo.add_log(LogEntry(project_id=project.id, level="info", message="once"))
    assert lost  # the answer was lost and the request retried
    with psycopg.connect(fake_postgrest.dsn) as conn:
        rows = conn.execute("SELECT message FROM agent_logs WHERE project_id = %s",
                            (project.id,)).fetchall()
    assert rows == [("once",)]
    assert [e.message for e in repo.recent_logs(project.id)] == ["once"]
