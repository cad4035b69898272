"""Suspected label errors are judged by the trained model's embeddings: a `chance` or `weak`
model's "suspects" are mostly images it has not learned (74 false suspects on `scenes` at 0.45
accuracy), so they are not computed, report.json and report.html say why, and the summary never
names them; a sound model's list is capped at 5 % of the images judged.

The embeddings here are those of an untrained network on random images: no structure at all, so
cleanlab flags a large share of them, as it did for the weak scenes model."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training_agent.adapters.trainers import report_page
from training_agent.adapters.trainers.analysis import (
    MAX_SUSPECT_SHARE,
    Predictions,
    analyse,
    label_issues,
)
from training_agent.adapters.trainers.data import CachedSplit
from training_agent.domain.verdict import job_metrics, summarize

pytest.importorskip("cleanlab")

NAMES = ["mountains", "city", "forest", "sea"]
ROOT = Path("/data/scenes")


def random_predictions(n: int = 400, seed: int = 0) -> dict[str, Predictions]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(NAMES)
    return {"train": Predictions(labels, rng.dirichlet(np.ones(4), n), rng.random((n, 16)),
                                 [ROOT / "train" / NAMES[y] / f"{i}.jpg"
                                  for i, y in enumerate(labels)])}


@pytest.mark.parametrize("level", ["chance", "weak"])
def test_a_chance_or_weak_model_lists_no_suspects_and_says_why(level):
    got = label_issues(random_predictions(), NAMES, ROOT, level)
    assert got["count"] == 0 and got["listed"] == []
    assert got["withheld"] == level
    assert got["note"].startswith(f"not computed: the model's verdict is '{level}'")


def test_a_sound_models_suspects_are_capped_at_a_share_of_the_images():
    got = label_issues(random_predictions(), NAMES, ROOT, "ok")
    cap = int(MAX_SUSPECT_SHARE * 400)
    assert got["flagged"] > cap  # structureless embeddings: cleanlab flags many
    assert got["count"] == cap == len(got["listed"])
    assert f"cleanlab flagged {got['flagged']} of 400 images" in got["note"]
    quality = [row["given_label_quality"] for row in got["listed"]]
    assert quality == sorted(quality)  # the least likely labels are the ones kept


def cached(n: int, seed: int) -> CachedSplit:
    split = CachedSplit.__new__(CachedSplit)
    gen = torch.Generator().manual_seed(seed)
    split.images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
    split.labels = torch.arange(n) % len(NAMES)
    split.paths = [ROOT / ("train" if seed == 0 else "test") / NAMES[i % 4] / f"{i}.png"
                   for i in range(n)]
    split.skipped = []
    return split


def weak_metrics() -> dict:
    matrix = [[4, 2, 2, 2], [2, 4, 2, 2], [1, 1, 6, 2], [1, 1, 2, 6]]  # 20 of 40: weak
    return {"test_accuracy": 0.5, "val_accuracy": 0.45, "epochs_run": 1,
            "stop_reason": "epochs",
            "confusion_matrix": {"split": "test", "labels": NAMES, "matrix": matrix},
            "per_class": {n: {"precision": 0.5, "recall": matrix[i][i] / 10, "f1": 0.5,
                              "support": 10} for i, n in enumerate(NAMES)}}


def run_analysis(metrics: dict) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 4))
    data = {"train": cached(300, 0), "test": cached(40, 1)}
    return analyse(model, data, lambda x: x.float() / 255, 64, torch.device("cpu"),
                   contextlib.nullcontext, NAMES, metrics, ROOT, None)


def test_the_weak_models_report_summary_and_page_leave_suspects_out(tmp_path):
    metrics = weak_metrics()
    metrics["verdict"] = job_metrics(metrics)["verdict"]
    assert metrics["verdict"]["level"] == "weak"
    report = run_analysis(metrics)
    issues = report["label_issues"]
    assert issues["withheld"] == "weak" and issues["count"] == 0 and issues["listed"] == []
    assert report["findings"]["label_issues"]["withheld"] == "weak"
    assert report["findings"]["label_issues"]["count"] == 0

    metrics["findings"] = report["findings"]
    summary = summarize(job_metrics(metrics))
    assert "mislabelled" not in summary and "suspected label" not in summary
    assert "Next step: try more epochs, a larger image size, or pretrained weights." in summary

    files = report_page.write_reports(tmp_path, None, report, summary, "scenes", NAMES, {}, {})
    written = json.loads(files["report.json"].read_text())["label_issues"]
    assert written["withheld"] == "weak" and "not computed" in written["note"]
    page = files["report.html"].read_text()
    assert "Suspected label errors were not computed: the model&#x27;s verdict is " \
           "&#x27;weak&#x27;" in page


def test_the_same_embeddings_under_an_ok_verdict_would_have_listed_many():
    metrics = weak_metrics()
    metrics["verdict"] = {"level": "ok", "text": "pretend"}
    issues = run_analysis(metrics)["label_issues"]
    assert issues["flagged"] > issues["count"] == int(MAX_SUSPECT_SHARE * 340)


def test_the_summary_never_names_a_weak_models_suspects_from_older_findings():
    metrics = weak_metrics()
    metrics["findings"] = {"classes": 4, "chance": 0.25, "train_images": 400,
                           "label_issues": {"available": True, "count": 74}}
    summary = summarize(job_metrics(metrics))
    assert "mislabelled" not in summary and "74" not in summary
    assert "Next step: try more epochs" in summary


def test_a_weak_model_does_not_even_import_cleanlab(monkeypatch):
    """Importing cleanlab (scikit-learn, SciPy, pandas) costs seconds: a model whose suspects
    are withheld does not pay it."""
    import sys

    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # an import would fail
    got = label_issues(random_predictions(), NAMES, ROOT, "weak")
    assert got["withheld"] == "weak" and got["available"] is True


def test_a_weak_models_analysis_predicts_only_the_result_split(monkeypatch):
    """Without the label check the training set's forward pass (the analysis' largest cost)
    is not needed: only the test images, for the worst confusions' examples."""
    import training_agent.adapters.trainers.analysis as analysis

    seen: list[str] = []
    real = analysis.predict

    def counting(model, split, *args):
        seen.append(split.paths[0].parts[3])  # /data/scenes/<split>/...
        return real(model, split, *args)

    monkeypatch.setattr(analysis, "predict", counting)
    metrics = weak_metrics()
    metrics["verdict"] = {"level": "weak", "text": "weak"}
    run_analysis(metrics)
    assert seen == ["test"]
    seen.clear()
    metrics["verdict"] = {"level": "ok", "text": "ok"}
    run_analysis(metrics)
    assert seen == ["train", "test"]
