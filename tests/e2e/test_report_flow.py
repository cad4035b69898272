"""The reports end to end on the embedded default, through the real CLI: a dataset with a
planted test leak (and swapped labels, a missing class, imbalance) trains; the three report
files are in the model store beside the model, the manifest lists them with their sha256, and
the summary in train's output, status --json, the last agent_logs row and MCP names the leak."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client

from tests.e2e.agent_process import db_rows
from tests.e2e.test_cli_flow import cli
from training_agent.testing.planted import make_planted_zip

pytestmark = pytest.mark.slow

CONFIG = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 16}
LEAK = "copy training images and inflate the test accuracy"


def test_reports_are_stored_listed_and_summarised_with_the_planted_leak(tmp_path, monkeypatch):
    home = tmp_path / "home"
    archive = tmp_path / "planted.zip"
    truth = make_planted_zip(archive, train=24, test=6, leaks=2, swapped=4, family="colours")
    out = cli(home, "project", "create", "--name", "planted", "--dataset", str(archive),
              "--config", json.dumps(CONFIG)).stdout
    pid = out.strip().splitlines()[-1]

    trained = cli(home, "train", pid, "--epochs", "2").stdout
    [summary] = [line for line in trained.splitlines() if line.startswith("summary: ")]
    leaked = len(truth.exact_leaks) + len(truth.near_leaks)
    assert f"{leaked} test images of {truth.test_images}" in summary and LEAK in summary
    assert "Next step: remove the 4 test images that copy training images" in summary

    [model] = db_rows(home, "SELECT * FROM models WHERE project_id = ?", pid)
    folder = Path(urlsplit(model["gcs_url"]).path).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("dataset_report.json", "report.json", "report.html"):
        stored = folder / name
        assert stored.is_file(), name
        assert manifest["artifacts"][name]["sha256"] == \
            hashlib.sha256(stored.read_bytes()).hexdigest()
    metadata = json.loads(model["metadata"])
    assert set(metadata["reports"]) == {"dataset_report.json", "report.json", "report.html"}
    dataset = json.loads((folder / "dataset_report.json").read_text())
    assert dataset["duplicates"]["test_leak"]["images"] == leaked

    status = json.loads(cli(home, "status", pid, "--json").stdout)
    job = status["job"]
    assert LEAK in job["summary"] and job["summary"] == summary.removeprefix("summary: ")
    assert job["metrics"]["findings"]["test_leak"]["images"] == leaked
    assert job["metrics"]["findings"]["missing_from_test"] == [truth.missing_from_test]
    assert job["reports"]["report.html"].endswith("/report.html")
    final = status["recent_logs"][0]
    assert final["message"].startswith("training complete") and LEAK in final["message"]
    assert any(row["message"].startswith("dataset check: ")
               and "inflate the test accuracy" in row["message"]
               for row in status["recent_logs"])

    # MCP: dataset_report by project id and by job id returns the stored JSON
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(home))
    from training_agent.entrypoints.container import build_container
    from training_agent.entrypoints.mcp_server import build_mcp_server
    from training_agent.entrypoints.worker.runner import JobRunner

    container = build_container()
    service = container.training_service()
    server = build_mcp_server(service, JobRunner(service, build_container, owner="test"))

    async def ask() -> None:
        async with Client(server) as client:
            for args in ({"project_id": pid}, {"job_id": job["id"]}):
                got = await client.call_tool("dataset_report", args)
                assert not got.is_error, got.content
                assert got.structured_content["duplicates"]["test_leak"]["images"] == leaked
                assert got.structured_content["job_id"] == job["id"]

    anyio.run(ask)
    assert os.environ["TRAINING_AGENT_HOME"] == str(home)
