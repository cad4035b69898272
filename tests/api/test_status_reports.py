"""`GET /agents/training/status/{id}` of a finished job carries what an assistant acts on: the
`summary`, `metrics.findings` (structured) and `reports` (the report files' URLs).

A real tiny training (the PyTorch trainer in a real worker process, 2 epochs at 32 px) over a
dataset with a planted test leak, a class missing from test/ and imbalance, started and read
through Litestar's test client; the URLs are then followed to the stored files."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient

from training_agent.entrypoints.container import build_container
from training_agent.entrypoints.http import create_app
from training_agent.entrypoints.worker.runner import JobRunner
from training_agent.testing.planted import make_planted_zip

from .conftest import settings_for

pytestmark = pytest.mark.slow

CONFIG = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 16,
          "epochs": 2}
REPORTS = {"dataset_report.json", "report.json", "report.html"}


def test_a_finished_jobs_status_carries_its_summary_findings_and_report_urls(tmp_path: Path):
    truth = make_planted_zip(tmp_path / "planted.zip", train=16, test=6, leaks=2, swapped=2,
                             family="colours")
    settings = settings_for(tmp_path / "home")
    container = build_container(settings)
    runner = JobRunner(container.training_service(), functools.partial(build_container, settings),
                       owner="serve@test", max_concurrent=1, heartbeat_seconds=0.5,
                       poll_seconds=0.05)
    with TestClient(create_app(container, runner, api_key=None)) as client:
        service = container.training_service()
        url = service.store_dataset(tmp_path / "planted.zip")
        pid = service.create_project("planted", url, CONFIG).id
        r = client.post("/agents/training/start", json={"project_id": pid})
        assert r.status_code == 202, r.text

        deadline = time.monotonic() + 300
        while True:
            r = client.get(f"/agents/training/status/{pid}")
            assert r.status_code == 200, r.text
            view = r.json()
            if (view["job"] or {}).get("state") in ("succeeded", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, f"gave up waiting; last status {view}"
            time.sleep(0.5)

    job = view["job"]
    assert job["state"] == "succeeded", job["error"]
    folder = Path(urlsplit(job["model_url"]).path).parent
    dataset = json.loads((folder / "dataset_report.json").read_text())
    leaked = dataset["duplicates"]["test_leak"]["images"]
    assert leaked >= len(truth.exact_leaks)  # byte copies are always found

    # the summary: the accuracy, the leak that inflates it, one next step
    summary = job["summary"]
    assert summary.startswith("Test accuracy ")
    assert f"{leaked} test images of {truth.test_images} (" in summary
    assert "copy training images and inflate the test accuracy" in summary
    assert summary.count("Next step:") == 1

    # the findings, structured
    findings = job["metrics"]["findings"]
    assert findings["test_leak"]["images"] == leaked
    assert findings["test_leak"]["of"] == truth.test_images
    assert findings["missing_from_test"] == [truth.missing_from_test]
    assert findings["imbalance"]["warn"] is True
    assert findings["imbalance"]["smallest"] == truth.small_class
    assert findings["label_issues"]["available"] is True
    assert findings["result_split"] == "test" and findings["classes"] == 4

    # the report URLs: the three files stored beside the model, as the manifest lists them
    assert set(job["reports"]) == REPORTS
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, report_url in job["reports"].items():
        assert report_url.startswith("file://") and report_url.endswith(f"/{name}")
        stored = Path(urlsplit(report_url).path)
        assert stored.parent == folder and stored.is_file()
        assert manifest["artifacts"][name]["sha256"] == \
            hashlib.sha256(stored.read_bytes()).hexdigest()
    report = json.loads((folder / "report.json").read_text())
    assert report["summary"] == summary and report["findings"] == findings
    assert report["job_id"] == job["id"]
