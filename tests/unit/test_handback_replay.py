"""bench/handback_rule.py replays the hand-back rule on recorded runs: the band decides
between the best validation epoch's test accuracy and the last epoch's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "handback_rule.py"


def load():
    spec = importlib.util.spec_from_file_location("handback_rule", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_band_picks_the_last_epoch_only_when_the_best_is_within_it():
    rule = load()
    assert rule.val_images("shapes", 50) == 32  # 4 classes, 8 of 50 held out each
    assert rule.val_images("glyphs", 50) == 80
    # best validation 0.66 at epoch 2, last 0.53: 1.6 standard errors below on 32 images
    run = {"val": [0.3, 0.66, 0.5, 0.53], "curve": [0.3, 0.46, 0.55, 0.64]}
    assert rule.handed_back(run, 0.0, 32) == 0.46
    assert rule.handed_back(run, 1.0, 32) == 0.46
    assert rule.handed_back(run, 2.0, 32) == 0.64
    assert rule.handed_back(run, float("inf"), 32) == 0.64
