"""The result analysis on a tiny real training run over a dataset with planted problems:
report.json (per-class metrics, confused pairs, suspected label errors with their paths),
report.html with embedded thumbnails, dataset_report.json, all listed in the manifest."""

from __future__ import annotations

import json

import pytest

from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.adapters.trainers.report_page import NAMES
from training_agent.domain.archive import open_dataset
from training_agent.testing.planted import make_planted_zip

from ..trainers.conftest import Recorder, make_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    truth = make_planted_zip(tmp / "planted.zip", train=40, test=10, swapped=6,
                             family="colours")
    dest = tmp / "data"
    splits = open_dataset(tmp / "planted.zip", dest, 0.15, 0)
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(tmp, splits, epochs=3), sink)
    return truth, result, sink


def test_reports_are_written_and_listed_in_the_manifest(trained):
    truth, result, sink = trained
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    for name in NAMES:
        assert name in result.artifacts and result.artifacts[name].is_file()
        assert len(manifest["artifacts"][name]["sha256"]) == 64
    assert "dataset_check_seconds" in manifest["timings"]
    assert any(m.startswith("dataset check: ") and "inflate the test accuracy" in m
               for m in sink.messages), sink.messages


def test_report_json_has_per_class_metrics_confusions_and_summary(trained):
    truth, result, _ = trained
    report = json.loads(result.artifacts["report.json"].read_text())
    assert report["result_split"] == "test"
    assert set(report["per_class"]) == {"red", "green", "blue", "yellow"}
    assert {"precision", "recall", "f1", "support"} <= set(report["per_class"]["red"])
    for pair in report["confused_pairs"]:
        assert pair["count"] > 0 and pair["true"] != pair["predicted"]
    leak = report["findings"]["test_leak"]
    assert leak["images"] == 6 and leak["of"] == truth.test_images
    assert "copy training images and inflate the test accuracy" in report["summary"]
    assert report["summary"].count("Next step:") == 1


def test_suspected_label_errors_find_most_swapped_labels(trained):
    truth, result, _ = trained
    issues = json.loads(result.artifacts["report.json"].read_text())["label_issues"]
    assert issues["available"] and "find_label_issues" in issues["method"]
    suspects = {i["path"] for i in issues["listed"]}
    found = suspects & set(truth.swapped)
    bad_files = set(truth.tiny + truth.blank + truth.extreme_aspect)
    false = suspects - set(truth.swapped) - bad_files
    print(f"label issues: {len(found)}/{len(truth.swapped)} swapped found, {len(false)} false "
          f"suspects, {len(suspects & bad_files)} planted bad files")
    assert len(found) >= len(truth.swapped) / 2, issues["listed"]
    assert len(false) < len(found), issues["listed"]


def test_report_page_is_self_contained_with_thumbnails(trained):
    _, result, _ = trained
    page = result.artifacts["report.html"].read_text()
    assert "<h2 id='dataset'>" in page and "<h2 id='results'>" in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
