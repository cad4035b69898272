"""GET /agents/training/projects (paged, newest first), one project, and the OpenAPI document
carrying the training config's schema (issue 12)."""

from __future__ import annotations

import jsonschema
from openapi_spec_validator import validate

from training_agent.domain.config import TrainingConfig

KEY = "s3cret-key-value"
HEADERS = {"X-API-Key": KEY}


def test_projects_are_listed_newest_first_in_pages(make_agent):
    agent = make_agent(api_key=KEY)
    ids = [agent.project(name) for name in ("first", "second", "third")]
    r = agent.client.get("/agents/training/projects", params={"limit": 2}, headers=HEADERS)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [p["name"] for p in page["projects"]] == ["third", "second"]
    assert [p["id"] for p in page["projects"]] == ids[:0:-1]
    assert (page["limit"], page["offset"], page["next_offset"]) == (2, 0, 2)
    assert page["projects"][0]["status"] == "pending_training"
    assert page["projects"][0]["last_job"] is None
    nxt = agent.client.get("/agents/training/projects", params={"offset": page["next_offset"]},
                           headers=HEADERS).json()
    assert [p["name"] for p in nxt["projects"]] == ["first"] and nxt["next_offset"] is None

    agent.client.post("/agents/training/start", json={"project_id": ids[0]}, headers=HEADERS)
    agent.wait_status(ids[0], "pending_evaluation")
    [first] = agent.client.get("/agents/training/projects", params={"offset": 2},
                               headers=HEADERS).json()["projects"]
    assert first["last_job"]["state"] == "succeeded"
    assert first["last_job"]["accuracy"] == 0.75  # the fake trainer's

    shown = agent.client.get(f"/agents/training/projects/{ids[0]}", headers=HEADERS).json()
    assert (shown["name"], shown["last_job"]["state"]) == ("first", "succeeded")
    assert shown["model_url"].endswith("/model.pth") and shown["model_accuracy"] == 0.75
    assert shown["training_config"]["epochs"] == 2


def test_project_list_follows_the_auth_and_error_table(make_agent):
    agent = make_agent(api_key=KEY)
    assert agent.client.get("/agents/training/projects").status_code == 401
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}):
        r = agent.client.get("/agents/training/projects", params=params, headers=HEADERS)
        assert r.status_code == 422, (params, r.text)
    r = agent.client.get("/agents/training/projects/not-a-uuid", headers=HEADERS)
    assert r.status_code == 422 and "not a UUID" in r.json()["detail"]
    r = agent.client.get("/agents/training/projects/4b1f3f5e-0000-4000-8000-000000000000",
                         headers=HEADERS)
    assert r.status_code == 404


def test_the_openapi_document_is_valid_and_types_the_start_config(make_agent):
    schema = make_agent().client.get("/schema/openapi.json").json()
    validate(schema)  # OpenAPI 3.1, its JSON Schema dialect included
    config = schema["components"]["schemas"]["TrainingConfig"]
    jsonschema.Draft202012Validator.check_schema(config)
    assert set(config["properties"]) == set(TrainingConfig.model_fields)
    assert config["additionalProperties"] is False
    for name, prop in config["properties"].items():
        assert prop.get("description") and "default" in prop, name
    assert config["properties"]["lr"]["default"] is None
    assert {"type": "integer", "minimum": 16, "maximum": 1024} in \
        config["properties"]["image_size"]["anyOf"]
    start = schema["components"]["schemas"]["StartRequest"]["properties"]["config"]
    assert {"$ref": "#/components/schemas/TrainingConfig"} in start["anyOf"]
    # the schema accepts what the service accepts, and refuses what it refuses
    validator = jsonschema.Draft202012Validator(config)
    assert validator.is_valid({"epochs": "auto", "backbone": "resnet50", "lr": 0.01})
    for bad in ({"epochs": 0}, {"epochs": True}, {"colour": "red"}, {"optimizer": "lion"}):
        assert not validator.is_valid(bad), bad
    listing = schema["paths"]["/agents/training/projects"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset"}
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == \
        "#/components/schemas/ProjectPageView"


def test_the_docs_page_needs_nothing_but_this_server(make_agent):
    """/schema is Swagger UI from the package's own files (the browser check is in
    tests/e2e/test_api_docs_browser.py): every script, style and icon it loads is served here."""
    import re

    client = make_agent().client
    page = client.get("/schema")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls and all(u.startswith("/schema/assets/") for u in urls), urls
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 500, url
    assert client.get("/schema/assets/docs.py").status_code == 404  # only the listed files
    assert client.get("/schema/openapi.json").status_code == 200
