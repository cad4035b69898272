"""report.html in a real headless browser (Chromium, from Debian's `chromium` package): the page
loads with the network cut off (a dead proxy, every host name unresolvable), renders its
sections, and its embedded thumbnails and plots are decoded and painted, not broken images.

The page is made from real parts without training: the planted `scenes` dataset, extracted,
decoded into the cache and checked (dataset_report.json), and the result analysis of an
untrained small network over that cache (its confusions give thumbnails of real images), with
the trainer's plots. Skipped, with the reason, where Chromium is not installed."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training_agent.adapters.trainers import report_page
from training_agent.adapters.trainers.analysis import analyse, predict
from training_agent.adapters.trainers.artifacts import write_plots
from training_agent.adapters.trainers.data import CachedSplit, load_split
from training_agent.adapters.trainers.dataset_check import Pixels, check_dataset
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.archive import open_dataset
from training_agent.domain.verdict import job_metrics, summarize
from training_agent.testing.planted import make_planted_zip

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                         "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium): "
                             "the headless-browser check of report.html needs it")

WIDTH, HEIGHT = 1280, 5000
THUMB = re.compile(r"<figure><img alt=\"([^\"]+)\" src=\"data:image/png;base64,[A-Za-z0-9+/=]+\">")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium headless on a file:// page with no network: a dead proxy for every URL and
    no host name resolving."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={WIDTH},{HEIGHT}",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)


def metrics_of(model: torch.nn.Module, split: CachedSplit, names: list[str]) -> dict:
    pred = predict(model, split, lambda x: x.float() / 255, 64, torch.device("cpu"),
                   contextlib.nullcontext)
    guess = pred.probs.argmax(axis=1)
    k = len(names)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(pred.labels, guess, strict=True):
        cm[t, p] += 1
    per_class = {}
    for i, name in enumerate(names):
        p = cm[i, i] / cm[:, i].sum() if cm[:, i].sum() else 0.0
        r = cm[i, i] / cm[i].sum() if cm[i].sum() else 0.0
        per_class[name] = {"precision": float(p), "recall": float(r),
                           "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
                           "support": int(cm[i].sum())}
    metrics = {"test_accuracy": float(np.trace(cm) / cm.sum()), "val_accuracy": 0.3,
               "epochs_run": 1, "stop_reason": "epochs", "per_class": per_class,
               "confusion_matrix": {"split": "test", "labels": names, "matrix": cm.tolist()}}
    metrics["verdict"] = job_metrics(metrics)["verdict"]
    return metrics


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    make_planted_zip(tmp / "planted.zip", train=20, test=6)
    splits = open_dataset(tmp / "planted.zip", tmp / "data", 0.15, 0)
    names = splits.class_names
    data = {s: load_split(getattr(splits, s), 32, 2, cache=True, workers=0,
                         locate=source_of(splits))
            for s in ("train", "val", "test")}
    assert all(isinstance(d, CachedSplit) for d in data.values())
    dataset = check_dataset(splits, 32, {s: Pixels(d.paths, d.images) for s, d in data.items()},
                            {s: d.skipped for s, d in data.items()})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(32, len(names)))
    metrics = metrics_of(model, data["test"], names)
    result = analyse(model, data, lambda x: x.float() / 255, 64, torch.device("cpu"),
                     contextlib.nullcontext, names, metrics, splits.root, dataset)
    metrics["findings"] = result["findings"]
    out = tmp / "model"
    out.mkdir()
    plots = write_plots([{"epoch": 1, "train_loss": 1.4, "val_accuracy": 0.3}],
                        metrics["confusion_matrix"]["matrix"], names, "test", out)
    files = report_page.write_reports(out, dataset, result, summarize(job_metrics(metrics)),
                                      "Training report: planted", names, {}, plots)
    return files["report.html"]


def test_the_page_renders_its_sections_and_thumbnails_offline(report_html: Path, tmp_path):
    dom = chromium(report_html, tmp_path / "profile", "--dump-dom").stdout
    for section in ("summary", "dataset", "results", "labels"):
        assert f'id="{section}"' in dom, section
    assert "Next step:" in dom and "Duplicates" in dom and "Worst confusions" in dom
    thumbs = THUMB.findall(dom)
    assert len(thumbs) >= 2, "no thumbnails of the worst confusions in the rendered page"
    assert all(alt.startswith("test/") for alt in thumbs)
    plots = re.findall(r'<img alt="(confusion matrix|training curves)" src="data:image/png',
                       dom)
    assert sorted(plots) == ["confusion matrix", "training curves"]
    assert "http://" not in dom and "https://" not in dom and "<script" not in dom


def test_the_screenshot_shows_the_embedded_images_painted(report_html: Path, tmp_path):
    """The screenshot is not blank, and differs from one of the same page whose images are
    made undecodable over at least half the images' area: the browser decoded and painted
    them rather than showing broken-image boxes."""
    shot = tmp_path / "page.png"
    chromium(report_html, tmp_path / "p1", f"--screenshot={shot}")
    page = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert page.shape == (HEIGHT, WIDTH, 3)
    assert page.std() > 10 and len(np.unique(page.reshape(-1, 3), axis=0)) > 500

    html = report_html.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+",
                             "data:image/png;base64,AAAA", html))
    shot2 = tmp_path / "broken.png"
    chromium(broken, tmp_path / "p2", f"--screenshot={shot2}")
    without = np.asarray(Image.open(shot2).convert("RGB")).astype(int)
    changed = int((np.abs(page - without).sum(axis=2) > 30).sum())
    thumbs = len(THUMB.findall(html.replace("'", '"')))
    thumb_area = thumbs * 96 * 96  # CSS: .thumbs img{width:96px;height:96px}
    assert changed > thumb_area / 2, (changed, thumb_area)
