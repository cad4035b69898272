"""Every route of the HTTP API (README "Serving", the OpenAPI document at /schema) and every error
code, through Litestar's test client."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from training_agent.domain.models import Project, ProjectStatus

START = "/agents/training/start"
MISSING = str(uuid.uuid4())


def test_start_returns_202_at_once_and_the_job_reaches_pending_evaluation(make_agent):
    agent = make_agent(epoch_seconds=0.3)
    pid = agent.project()

    r = agent.client.post(START, json={"project_id": pid, "config": {"epochs": 3}})

    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"job_id", "project_id", "state", "status_url"}
    assert body["project_id"] == pid and body["state"] == "queued"
    assert body["status_url"] == f"/agents/training/status/{pid}"
    # progress reaches the status endpoint while the worker trains
    mid = agent.wait_for(pid, lambda v: (v["job"] or {}).get("progress", {}).get("epoch"))
    assert mid["job"]["progress"]["epochs"] == 3
    assert mid["job"]["metrics"] is None and mid["job"]["summary"] is None  # until finished
    done = agent.wait_status(pid, "pending_evaluation")
    job = done["job"]
    assert job["id"] == body["job_id"] and job["state"] == "succeeded"
    assert set(job["progress"]) == {"epoch", "epochs", "train_loss", "val_accuracy",
                                    "images_per_second", "eta_seconds"}
    assert job["progress"]["epoch"] == 3
    assert job["model_url"].endswith(f"/models/{pid}/{job['id']}/model.pth")
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    # the finished job's metrics: no test split in this dataset, so no test_accuracy
    assert job["metrics"] == {
        "val_accuracy": 0.75, "epochs_run": 3, "stop_reason": "epochs",
        "per_class": {name: {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": None}
                      for name in ("class_a", "class_b")},
        "verdict": {"level": "ok", "text": "0.75 validation accuracy is well above chance "
                                           "(0.50 for 2 classes)."}}
    assert job["summary"].startswith("Validation accuracy 0.75 (there is no test split) "
                                     "after 3 epochs")
    # the status moves when the model is recorded; its log line follows (newest first)
    logs = agent.wait_for(pid, lambda v: v["recent_logs"][0]["message"].startswith(
        "training complete"))["recent_logs"]
    assert set(logs[0]) == {"level", "message", "details", "created_at"}
    [model] = agent.container.metadata_repo().list_models(pid)
    assert model.name == "shapes_model" and model.accuracy == 0.75
    assert model.url == job["model_url"]


def test_start_errors(make_agent):
    agent = make_agent()
    pid = agent.project()
    no_dataset = agent.container.metadata_repo().add_project(Project(name="bare")).id

    def start(body):
        return agent.client.post(START, json=body)

    assert start({"project_id": MISSING}).status_code == 404
    r = start({"project_id": no_dataset})
    assert r.status_code == 404 and "no dataset" in r.json()["detail"]
    r = start({"project_id": "not-a-uuid"})
    assert r.status_code == 422 and "not a UUID" in r.json()["detail"]
    r = start({"project_id": pid, "config": {"epochz": 3}})
    assert r.status_code == 422 and "epochz: unknown key" in r.json()["detail"]
    r = start({"project_id": pid, "config": {"epochs": 0}})
    assert r.status_code == 422 and "epochs" in r.json()["detail"]
    r = start({"project_id": pid, "config": {"backbone": "no-such-backbone"}})
    assert r.status_code == 422 and "no-such-backbone" in r.json()["detail"]
    assert start({"config": {}}).status_code == 422  # no project_id
    assert start({"project_id": pid, "colour": "red"}).status_code == 422  # unknown field
    assert agent.client.post(START, content=b"{not json").status_code == 400
    assert agent.service.status(pid).job is None  # none of these queued anything


def test_start_conflicts_and_force(make_agent):
    agent = make_agent(epoch_seconds=0.5)
    pid = agent.project(config={"epochs": 20})
    assert agent.client.post(START, json={"project_id": pid}).status_code == 202

    r = agent.client.post(START, json={"project_id": pid})
    assert r.status_code == 409 and "active job" in r.json()["detail"]
    r = agent.client.post(START, json={"project_id": pid, "force": True})
    assert r.status_code == 409  # force never while a job is active
    assert agent.client.post(f"/agents/training/cancel/{pid}").status_code == 202
    agent.wait_status(pid, "training_cancelled")

    done = agent.project(name="done", config={"epochs": 1})
    agent.container.metadata_repo().set_project_status(done, ProjectStatus.PENDING_EVALUATION)
    r = agent.client.post(START, json={"project_id": done})
    assert r.status_code == 409 and "pending_evaluation" in r.json()["detail"]
    assert agent.client.post(START, json={"project_id": done, "force": True}).status_code == 202
    agent.wait_for(done, lambda v: v["job"]["state"] == "succeeded")


def test_twenty_concurrent_starts_give_one_job(make_agent):
    agent = make_agent(epoch_seconds=0.2)
    pid = agent.project()

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: agent.client.post(START, json={"project_id": pid})
                              .status_code, range(20)))

    assert sorted(codes) == [202] + [409] * 19
    agent.wait_status(pid, "pending_evaluation")
    repo = agent.container.metadata_repo()
    assert [m.project_id for m in repo.list_models(pid)] == [pid]
    assert len({e.details.get("job_id") for e in repo.recent_logs(pid, 500)
                if e.message == "training job queued"}) == 1


def test_status_errors(make_agent):
    agent = make_agent()
    assert agent.client.get(f"/agents/training/status/{MISSING}").status_code == 404
    r = agent.client.get("/agents/training/status/abc")
    assert r.status_code == 422 and r.json() == {
        "status_code": 422, "detail": "project_id 'abc' is not a UUID", "extra": None}
    pid = agent.project()
    view = agent.status(pid)
    assert view["project_status"] == "pending_training" and view["job"] is None
    assert view["recent_logs"][0]["message"] == "project created"


def test_cancel_stops_the_worker_within_seconds(make_agent):
    agent = make_agent(epoch_seconds=1.0)
    pid = agent.project(config={"epochs": 60})
    job_id = agent.client.post(START, json={"project_id": pid}).json()["job_id"]
    agent.wait_for(pid, lambda v: v["job"]["state"] == "training")
    pid_of_worker = agent.runner.worker_pid(job_id)
    assert pid_of_worker

    r = agent.client.post(f"/agents/training/cancel/{pid}")

    assert r.status_code == 202
    assert r.json() == {"job_id": job_id, "project_id": pid, "state": "cancelled",
                        "project_status": "training_cancelled"}
    view = agent.status(pid)
    assert view["project_status"] == "training_cancelled"
    assert view["job"]["state"] == "cancelled" and view["job"]["finished_at"]
    agent.wait_for(pid, lambda v: not agent.runner.running_jobs(), timeout=8)
    assert agent.status(pid)["job"]["state"] == "cancelled"  # the worker's exit did not fail it
    assert not agent.container.metadata_repo().list_models(pid)
    assert agent.client.post(START, json={"project_id": pid}).status_code == 202  # startable


def test_cancel_errors(make_agent):
    agent = make_agent()
    assert agent.client.post(f"/agents/training/cancel/{MISSING}").status_code == 404
    assert agent.client.post("/agents/training/cancel/xyz").status_code == 422
    r = agent.client.post(f"/agents/training/cancel/{agent.project()}")
    assert r.status_code == 409 and "no active training job" in r.json()["detail"]


def test_health_reports_each_dependency(make_agent):
    agent = make_agent()
    r = agent.client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"metadata_store", "model_store", "runner"}
    assert all(c["ok"] for c in body["checks"].values())


def test_health_is_503_when_a_dependency_is_down(make_agent):
    agent = make_agent()
    agent.runner.stop()
    r = agent.client.get("/health")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["runner"] == {"ok": False, "detail": "RuntimeError: job runner is not running",
                                "seconds": checks["runner"]["seconds"]}
    assert checks["metadata_store"]["ok"]


def test_health_is_503_when_the_metadata_store_is_down(make_agent, tmp_path):
    agent = make_agent()
    db = agent.container.metadata_repo().path
    db.unlink()
    db.mkdir()  # the database file is now a folder: sqlite cannot open it
    r = agent.client.get("/health")
    assert r.status_code == 503
    assert r.json()["checks"]["metadata_store"]["ok"] is False
    assert r.json()["status"] == "unavailable"
