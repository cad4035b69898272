"""The verdict on a finished job's model, and the metrics people are shown.

`judge(metrics)` says, in plain words, whether the model clearly learned something. The rule:

1. The *result split* is the one the confusion matrix was computed on (`test` when there is a
   test split, else `val`); its accuracy is the result accuracy and its `n` images the evidence.
2. The *baseline* is the better of two models that learned nothing: guessing (chance, 1/classes)
   and always answering the most common class of that split (the majority rate, the largest row
   sum of the confusion matrix over its total).
3. **chance**: the accuracy is not clearly above the baseline. "Clearly" is a one-sided exact
   binomial test: a model no better than the baseline gets each image right with probability
   `baseline`, so its number of correct answers is Binomial(n, baseline); the result is clear
   only when that many or more correct answers would happen by luck less than 1 % of the time
   (`ALPHA`). On 12 test images of 3 classes that needs 9 right (0.75); on 100 images of 10
   classes, 19 (0.19); on 1000, 124 (0.124). When the split size is unknown the plain comparison
   `accuracy > baseline` is used.
4. **weak**: clearly above the baseline but closing less than half (`WEAK_GAIN`) of the gap from
   the baseline to a perfect score, i.e. `(accuracy - baseline) / (1 - baseline) < 0.5`
   (for 10 balanced classes: below 0.55; for 2: below 0.75).
5. **ok** otherwise.

No images evaluated (an empty split) is `weak`: nothing shows that the model learned, and the
text says to add images. Pure: standard library only, like the rest of the domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .findings import sentences as finding_sentences

ALPHA = 0.01  # a result is "clearly above" the baseline when luck explains it < 1 % of the time
WEAK_GAIN = 0.5  # "weak": less than half of the gap from the baseline to 1.0 closed
ADVICE = "try more epochs, a larger image size, or pretrained weights"
LEVELS = ("ok", "weak", "chance")

SPLIT_WORDS = {"test": "test", "val": "validation"}
STOP_WORDS = {
    "epochs": "ran every epoch asked for",
    "early_stopping": "stopped early: validation accuracy stopped improving",
    "plateau": "stopped: validation accuracy stopped improving",
    "max_epochs": "stopped at the epoch ceiling (max_epochs)",
    "max_minutes": "stopped at the time limit (max_minutes)",
}


@dataclass(frozen=True)
class Evidence:
    """What the verdict is judged on, read from a trainer's metrics dict."""

    split: str  # "test" | "val"
    accuracy: float | None
    classes: int | None
    n: int | None  # images evaluated on `split`; None when the metrics do not say
    correct: int | None
    majority: float | None  # share of the most common class on `split`
    majority_class: str | None


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (summed in log space from k upwards)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if k <= n * p:  # at or below the mean: the complement's tail sums fewer, shrinking terms
        return max(0.0, 1.0 - binomial_tail(n - k + 1, n, 1.0 - p))
    log_term = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                + k * math.log(p) + (n - k) * math.log1p(-p))
    term = math.exp(log_term)
    total = term
    odds = p / (1.0 - p)
    for i in range(k, n):  # terms only shrink above the mean: stop once they stop counting
        term *= (n - i) / (i + 1) * odds
        total += term
        if term <= total * 1e-16:
            break
    return min(1.0, total)


def evidence(metrics: dict[str, Any], num_classes: int | None = None) -> Evidence:
    """Read the result split, its accuracy, size, correct count and majority class."""
    cm = metrics.get("confusion_matrix")
    matrix: list[list[float]] = []
    labels: list[str] = []
    split = "test" if metrics.get("test_accuracy") is not None else "val"
    if isinstance(cm, dict) and isinstance(cm.get("matrix"), list):
        matrix = [list(row) for row in cm["matrix"] if isinstance(row, list)]
        labels = [str(x) for x in cm.get("labels") or []]
        split = str(cm.get("split") or split)
    accuracy = _number(metrics.get(f"{split}_accuracy"))
    per_class = metrics.get("per_class")
    per_class = per_class if isinstance(per_class, dict) else {}
    classes = len(labels) or len(matrix) or len(per_class) or num_classes or None
    n = correct = None
    majority = None
    majority_class = None
    if matrix:
        rows = [sum(row) for row in matrix]
        n = int(round(sum(rows)))
        correct = int(round(sum(row[i] for i, row in enumerate(matrix) if i < len(row))))
        if n:
            top = max(range(len(rows)), key=lambda i: rows[i])
            majority = rows[top] / n
            majority_class = labels[top] if top < len(labels) else str(top)
            if accuracy is None:
                accuracy = correct / n
    elif per_class and all(isinstance(v, dict) and isinstance(v.get("support"), int)
                           for v in per_class.values()):
        support = {str(name): int(v["support"]) for name, v in per_class.items()}
        n = sum(support.values())
        if n:
            majority_class = max(support, key=lambda name: support[name])
            majority = support[majority_class] / n
            correct = round((accuracy or 0.0) * n)
    return Evidence(split=split, accuracy=accuracy, classes=classes, n=n, correct=correct,
                    majority=majority, majority_class=majority_class)


def judge(metrics: dict[str, Any], num_classes: int | None = None) -> dict[str, str]:
    """`{"level": "ok" | "weak" | "chance", "text": plain words}`; see the module's rule.
    `num_classes` is used only when the metrics name no classes (no matrix, no per-class)."""
    ev = evidence(metrics, num_classes)
    where = SPLIT_WORDS.get(ev.split, ev.split)
    if ev.n == 0:
        return _verdict("weak", f"No {where} images were evaluated, so nothing shows whether "
                                f"the model learned: add images to the {ev.split} split.")
    if ev.accuracy is None:
        return _verdict("weak", "No accuracy was measured, so nothing shows whether the model "
                                "learned.")
    acc = ev.accuracy
    if not ev.classes or ev.classes < 2:
        return _verdict("weak", f"{acc:.2f} {where} accuracy cannot be compared with chance: "
                                "the number of classes is unknown.")
    k = ev.classes
    chance = 1.0 / k
    by_majority = ev.majority is not None and ev.majority > chance + 1e-9
    baseline = ev.majority if by_majority and ev.majority is not None else chance
    if baseline >= 1.0:
        return _verdict("chance", f"Every one of the {ev.n} {where} images is of class "
                                  f"'{ev.majority_class}', so always answering it scores "
                                  f"{acc:.2f} too and this split cannot show that the model "
                                  f"learned: add {where} images of the other classes.")
    if ev.n is not None and ev.correct is not None:
        clear = binomial_tail(ev.correct, ev.n, baseline) < ALPHA
    else:
        clear = acc > baseline
    if not clear:
        return _verdict("chance", _not_above(ev, acc, chance, baseline, by_majority, where))
    gain = (acc - baseline) / (1.0 - baseline)
    above = (f"always answering the most common class, '{ev.majority_class}' "
             f"({ev.majority:.2f})" if by_majority else f"chance ({chance:.2f} for {k} classes)")
    if gain < WEAK_GAIN:
        return _verdict("weak", f"{acc:.2f} {where} accuracy is above {above} but weak: it "
                                f"closes only {math.floor(gain * 100)}% of the gap to a perfect score; "
                                f"{ADVICE}.")
    on = f" on {ev.n} images" if ev.n else ""
    return _verdict("ok", f"{acc:.2f} {where} accuracy{on} is well above {above}.")


def _not_above(ev: Evidence, acc: float, chance: float, baseline: float, by_majority: bool,
               where: str) -> str:
    k = ev.classes
    if acc > baseline + 1e-9:  # above, but a split this small cannot tell it from luck
        what = (f"always answering the most common class, '{ev.majority_class}' "
                f"({baseline:.2f})" if by_majority else f"chance ({chance:.2f} for {k} classes)")
        return (f"{acc:.2f} on {ev.n} {where} images is not clearly above {what}: the "
                f"model may not have learned; {ADVICE}, and more {where} images to judge it by.")
    if by_majority and acc > chance + 1e-9:
        head = (f"{acc:.2f} is no better than always answering the most common class, "
                f"'{ev.majority_class}' ({baseline:.2f} of the {ev.n} {where} images)")
    elif acc < chance / 2:
        head = f"{acc:.2f} is below chance level ({chance:.2f} for {k} classes)"
    else:
        head = f"{acc:.2f} is chance level for {k} classes"
    return f"{head}: the model has not learned; {ADVICE}."


def _verdict(level: str, text: str) -> dict[str, str]:
    return {"level": level, "text": text}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


# ---- the metrics object of a finished job -------------------------------------------------
def job_metrics(metrics: dict[str, Any], num_classes: int | None = None) -> dict[str, Any]:
    """The finished job's metrics as the status views, the models row and the manifest carry
    them: `test_accuracy` (absent without a test split), `val_accuracy`, `per_class`
    (precision, recall, f1 and support by class name), `epochs_run`, `stop_reason`, `verdict`.
    Idempotent: applied to its own output it returns the same object."""
    out: dict[str, Any] = {}
    if _number(metrics.get("test_accuracy")) is not None:
        out["test_accuracy"] = _number(metrics["test_accuracy"])
    out["val_accuracy"] = _number(metrics.get("val_accuracy"))
    per_class: dict[str, dict[str, Any]] = {}
    raw = metrics.get("per_class")
    for name, values in (raw.items() if isinstance(raw, dict) else []):
        if not isinstance(values, dict):
            continue
        p = _number(values.get("precision")) or 0.0
        r = _number(values.get("recall")) or 0.0
        f1 = _number(values.get("f1"))
        row: dict[str, Any] = {"precision": p, "recall": r,
                               "f1": f1 if f1 is not None else (2 * p * r / (p + r) if p + r
                                                                else 0.0)}
        if isinstance(values.get("support"), int):
            row["support"] = values["support"]
        per_class[str(name)] = row
    out["per_class"] = per_class
    epochs = metrics.get("epochs_run")
    out["epochs_run"] = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) \
        else None
    reason = metrics.get("stop_reason", metrics.get("stopped_by"))
    out["stop_reason"] = str(reason) if reason is not None else None
    verdict = metrics.get("verdict")
    if not (isinstance(verdict, dict) and verdict.get("level") in LEVELS
            and isinstance(verdict.get("text"), str)):
        verdict = judge(metrics, num_classes)
    out["verdict"] = {"level": verdict["level"], "text": verdict["text"]}
    if isinstance(metrics.get("findings"), dict):  # the report's findings (domain/findings.py)
        out["findings"] = dict(metrics["findings"])
    return out


def worst_classes(per_class: dict[str, dict[str, Any]], limit: int = 3
                  ) -> list[tuple[str, dict[str, Any]]]:
    """The classes with the lowest recall (per-class accuracy), worst first; ties by f1, name.
    Empty with fewer than two classes."""
    if len(per_class) < 2:
        return []
    # a class with no images in the split (support 0) was never tested: not "weakest"
    tested = {k: v for k, v in per_class.items() if v.get("support") != 0}
    ranked = sorted(tested.items(), key=lambda kv: (kv[1].get("recall", 0.0),
                                                       kv[1].get("f1", 0.0), kv[0]))
    return ranked[:limit]


def describe_stop(reason: str | None) -> str | None:
    if reason is None:
        return None
    return STOP_WORDS.get(reason, f"stopped: {reason.replace('_', ' ')}")


def summarize(metrics: dict[str, Any]) -> str:
    """A few plain sentences on a finished job's metrics (the `job_metrics` object); with the
    report's `findings`, also the most confused pair, what in the data inflates the score, and
    the one next step most likely to help (domain/findings.py)."""
    m = job_metrics(metrics)
    parts = []
    test, val = m.get("test_accuracy"), m.get("val_accuracy")
    if test is not None:
        head = f"Test accuracy {test:.2f}" + (f" (validation {val:.2f})" if val is not None
                                              else "")
    elif val is not None:
        head = f"Validation accuracy {val:.2f} (there is no test split)"
    else:
        head = "No accuracy was measured"
    if m["epochs_run"] is not None:
        head += f" after {m['epochs_run']} epoch{'s' if m['epochs_run'] != 1 else ''}"
    stop = describe_stop(m["stop_reason"])
    parts.append(head + (f"; training {stop}" if stop else "") + ".")
    worst = worst_classes(m["per_class"], 1)
    if worst and worst[0][1]["recall"] < 1.0:
        name, row = worst[0]
        share = f"{row['recall']:.2f} of its images" if row["recall"] > 0 else "none of its images"
        parts.append(f"Weakest class: '{name}', {share} recognised "
                     f"(precision {row['precision']:.2f}).")
    parts.append(m["verdict"]["text"])
    if "findings" in m:
        parts += finding_sentences(m["findings"], m["verdict"]["level"], m["per_class"], ADVICE)
    return " ".join(parts)


__all__ = ["ALPHA", "WEAK_GAIN", "Evidence", "binomial_tail", "describe_stop", "evidence",
           "job_metrics", "judge", "summarize", "worst_classes"]
