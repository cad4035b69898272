"""Which weights to hand back, replayed on recorded runs: `python bench/handback_rule.py`.

Every run in `bench/results/recipe_variants.jsonl` (written by bench/recipe_variants.py) has the
validation accuracy and the test accuracy of the judged weights after every epoch. For runs that
ended cooled down (stopped on a plateau or at the ceiling, 40 epochs or more), this replays the
hand-back rule of best_weights.py with several bands, "the last epoch is handed back when its
validation accuracy is within K standard errors of the best epoch's", and prints the mean test
accuracy of the weights each band hands back, per family. Ties between equal validation
accuracies go to the earlier epoch here (the trainer breaks them by validation loss, which the
record does not keep), so a few runs differ from what the trainer handed back."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from training_agent.adapters.trainers.best_weights import standard_error
from training_agent.testing.families import FAMILIES

RUNS = Path(__file__).parent / "results" / "recipe_variants.jsonl"
BANDS = {"none (always the best validation epoch)": 0.0, "one standard error": 1.0,
         "two standard errors": 2.0, "three standard errors": 3.0,
         "always the last epoch": float("inf")}


def val_images(family: str, train_per_class: int, val_fraction: float = 0.15) -> int:
    """The held-out validation images, as the archive splits them (a share of each class)."""
    return len(FAMILIES[family][0]) * int(round(train_per_class * val_fraction))


def handed_back(run: dict, band: float, n_val: int) -> float:
    val, test = run["val"], run["curve"]
    best = max(range(len(val)), key=lambda i: val[i])  # the first of equal bests
    keep_last = val[best] - val[-1] <= band * standard_error(val[best], n_val) + 1e-9
    return test[-1] if keep_last else test[best]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--train-per-class", type=int, default=50)
    args = ap.parse_args(argv)
    runs = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if len(r["curve"]) >= 40 and r["stop"] in ("plateau", "max_epochs")]
    families = sorted({r["family"] for r in runs})
    print(f"{len(runs)} runs that ended cooled down, 40 epochs or more")
    print("| band | " + " | ".join(families) + " | all |")
    print("|---|" + "---|" * (len(families) + 1))
    for name, band in BANDS.items():
        picks = {f: [handed_back(r, band, val_images(f, args.train_per_class))
                     for r in runs if r["family"] == f] for f in families}
        every = [x for v in picks.values() for x in v]
        print(f"| {name} | " + " | ".join(f"{statistics.mean(picks[f]):.3f} (n={len(picks[f])})"
                                          for f in families)
              + f" | {statistics.mean(every):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
