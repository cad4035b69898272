"""MCP_API_KEY rules on /agents/*, open /health and /schema, and the OpenAPI document."""

from __future__ import annotations

import logging

import pytest

KEY = "s3cret-key-value"


@pytest.fixture
def agent(make_agent):
    return make_agent(api_key=KEY)


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": KEY},
    {"Authorization": "Basic " + KEY}, {"X-API-Key": KEY[:-1]}, {"Authorization": "Bearer "},
])
def test_agents_routes_need_the_key(agent, headers):
    pid = agent.project()
    for method, path, body in [("POST", "/agents/training/start", {"project_id": pid}),
                               ("GET", f"/agents/training/status/{pid}", None),
                               ("POST", f"/agents/training/cancel/{pid}", None)]:
        r = agent.client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert KEY not in r.text
    assert agent.service.status(pid).job is None


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"},
                                     {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}])
def test_either_header_with_the_key_is_accepted(agent, headers):
    pid = agent.project()
    assert agent.client.get(f"/agents/training/status/{pid}", headers=headers).status_code == 200
    r = agent.client.post("/agents/training/start", json={"project_id": pid}, headers=headers)
    assert r.status_code == 202


def test_auth_comes_before_validation(agent):
    assert agent.client.get("/agents/training/status/not-a-uuid").status_code == 401


def test_health_and_schema_are_open(agent):
    assert agent.client.get("/health").status_code == 200
    assert agent.client.get("/schema/openapi.json").status_code == 200


def test_without_a_key_everything_is_open_and_startup_warns(make_agent, caplog):
    with caplog.at_level(logging.WARNING, logger="training_agent.http"):
        agent = make_agent(api_key=None)
    assert "MCP_API_KEY is not set" in caplog.text
    pid = agent.project()
    assert agent.client.get(f"/agents/training/status/{pid}").status_code == 200
    assert agent.client.get(f"/agents/training/status/{pid}",
                            headers={"X-API-Key": "anything"}).status_code == 200


def test_with_a_key_startup_does_not_warn(make_agent, caplog):
    with caplog.at_level(logging.WARNING, logger="training_agent.http"):
        make_agent(api_key=KEY)
    assert "MCP_API_KEY" not in caplog.text


def test_openapi_lists_routes_with_request_and_response_models(agent):
    schema = agent.client.get("/schema/openapi.json").json()
    paths = schema["paths"]
    ref = "#/components/schemas/{}".format

    start = paths["/agents/training/start"]["post"]
    assert start["operationId"] == "startTraining" and start["tags"] == ["training"]
    assert start["requestBody"]["content"]["application/json"]["schema"]["$ref"] == \
        ref("StartRequest")
    assert start["responses"]["202"]["content"]["application/json"]["schema"]["$ref"] == \
        ref("StartAccepted")
    assert set(start["responses"]) == {"202", "400", "401", "404", "409", "422"}

    status = paths["/agents/training/status/{project_id}"]["get"]
    assert status["operationId"] == "trainingStatus"
    assert status["parameters"][0]["in"] == "path"
    assert status["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == \
        ref("StatusView")
    assert set(status["responses"]) == {"200", "401", "404", "422"}

    cancel = paths["/agents/training/cancel/{project_id}"]["post"]
    assert cancel["operationId"] == "cancelTraining"
    assert cancel["responses"]["202"]["content"]["application/json"]["schema"]["$ref"] == \
        ref("CancelAccepted")
    assert set(cancel["responses"]) == {"202", "401", "404", "409", "422"}

    health = paths["/health"]["get"]
    assert set(health["responses"]) == {"200", "503"} and "security" not in health
    assert health["responses"]["503"]["content"]["application/json"]["schema"]["$ref"] == \
        ref("Health")

    for op in (start, status, cancel):
        assert op["security"] == [{"BearerKey": []}, {"HeaderKey": []}]
        assert op["responses"]["404" if op is not cancel else "409"]["content"][
            "application/json"]["schema"]["$ref"] == ref("ErrorBody")
    schemas = schema["components"]["schemas"]
    assert {"StartRequest", "StartAccepted", "StatusView", "JobView", "ProgressView", "LogView",
            "CancelAccepted", "Health", "ErrorBody"} <= set(schemas)
    assert set(schemas["ProgressView"]["properties"]) == {
        "epoch", "epochs", "train_loss", "val_accuracy", "images_per_second", "eta_seconds"}
    assert {"metrics", "summary"} <= set(schemas["JobView"]["properties"])
    assert set(schemas["JobMetricsView"]["properties"]) == {
        "test_accuracy", "val_accuracy", "per_class", "epochs_run", "stop_reason", "verdict",
        "findings"}
    assert schemas["VerdictView"]["properties"]["level"]["enum"] == ["ok", "weak", "chance"]
    assert schema["components"]["securitySchemes"]["HeaderKey"]["name"] == "X-API-Key"
