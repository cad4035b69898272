"""Analysis pieces without training: confused pairs, and the label-issue section when cleanlab
is not installed (the report is still written and says which extra to install)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training_agent.adapters.trainers.analysis import Predictions, confused_pairs, label_issues


def test_confused_pairs_largest_first_with_counts():
    pairs = confused_pairs([[8, 2, 0], [5, 5, 0], [0, 1, 9]], ["a", "b", "c"])
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("b", "a", 5), ("a", "b", 2), ("c", "b", 1)]
    assert pairs[0]["share_of_true"] == 0.5


def test_without_cleanlab_the_section_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # import fails as if missing
    rng = np.random.default_rng(0)
    preds = {"train": Predictions(np.array([0, 1] * 10), rng.random((20, 2)),
                                  rng.random((20, 8)), [Path(f"/d/train/x{i}.png")
                                                        for i in range(20)])}
    got = label_issues(preds, ["a", "b"], Path("/d"))
    assert got["available"] is False and got["count"] == 0
    assert "pip install 'training-agent[report]'" in got["note"]
