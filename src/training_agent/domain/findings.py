"""The actionable part of a finished job's summary, from the report's `findings`.

`findings` is the compact object the trainer's result analysis writes (report.json, the
manifest's metrics, the status views): the most confused class pair, test images that copy
training images (`test_leak`), duplicates, suspected label errors, imbalance, classes missing
from the test split, suspicious files. `sentences` turns it into at most three sentences: the
most confused pair; what in the data inflates or undermines the score; and the one next step
most likely to help, chosen by this order:

1. test images that copy training images: remove them (the score is inflated until then);
2. a chance or weak model: the verdict's advice (more epochs, a larger image size, pretrained
   weights);
3. suspected label errors: check those files;
4. classes missing from the test split: add test images of them;
5. the weakest class (recall below 0.9), more images of it;
6. training classes imbalanced: more images of the smallest class;
7. otherwise nothing urgent.

Suspected label errors are judged by the trained model's embeddings, so a chance or weak
model's suspects are mostly images it has not learned: the trainer does not compute them
(`label_issues.withheld`), and the summary never names suspects of such a model, whatever
the findings say.

Pure: standard library only."""

from __future__ import annotations

from typing import Any

GOOD_RECALL = 0.9
POOR = ("chance", "weak")  # verdict levels too poor to judge labels by


def _n(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def label_suspects(f: dict[str, Any], level: str) -> int:
    """Suspected label errors worth naming: none from a chance or weak model."""
    issues = f.get("label_issues") or {}
    if level in POOR or issues.get("withheld"):
        return 0
    return _n(issues.get("count"))


def data_sentence(f: dict[str, Any], level: str = "ok") -> str | None:
    """What in the data inflates or undermines the score, or None when nothing does."""
    parts = []
    leak = f.get("test_leak") or {}
    if _n(leak.get("images")):
        parts.append(f"{_plural(_n(leak['images']), 'test image')} of {_n(leak.get('of'))} "
                     f"({float(leak.get('share') or 0):.0%}) copy training images and inflate "
                     "the test accuracy")
    within = _n(f.get("duplicate_pairs_within_splits"))
    if within:
        parts.append(f"{_plural(within, 'duplicate pair')} within splits")
    issues = label_suspects(f, level)
    if issues:
        parts.append(f"{_plural(issues, 'image looks', 'images look')} "
                     "mislabelled (report.json lists them)")
    missing = [str(c) for c in f.get("missing_from_test") or []]
    if missing:
        parts.append(f"class {', '.join(repr(c) for c in missing[:3])} "
                     f"{'is' if len(missing) == 1 else 'are'} never tested")
    imbalance = f.get("imbalance") or {}
    if imbalance.get("warn"):
        parts.append(f"classes are imbalanced {float(imbalance.get('ratio') or 0):.0f}:1")
    sus = {k: _n(v) for k, v in (f.get("suspicious_files") or {}).items() if _n(v)}
    if sus:
        parts.append(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sus.items())
                     + " image" + ("s" if sum(sus.values()) > 1 else ""))
    if not parts:
        return None
    return "⚠️ Data: " + "; ".join(parts) + "."


def next_step(f: dict[str, Any], level: str, per_class: dict[str, dict[str, Any]],
              advice: str) -> str:
    issues = label_suspects(f, level)
    leak = _n((f.get("test_leak") or {}).get("images"))
    if leak:
        return (f"remove the {_plural(leak, 'test image')} that copy training images "
                "(dataset_report.json lists the pairs) so the test score can be trusted")
    if level in POOR:
        return advice
    if issues:
        return f"check the {_plural(issues, 'suspected label')} listed in report.json"
    missing = [str(c) for c in f.get("missing_from_test") or []]
    if missing:
        return f"add test images of {', '.join(repr(c) for c in missing[:3])}"
    ranked = sorted(per_class.items(), key=lambda kv: (kv[1].get("recall", 0.0), kv[0]))
    if len(ranked) > 1 and ranked[0][1].get("recall", 1.0) < GOOD_RECALL:
        return f"add more training images of '{ranked[0][0]}', the weakest class"
    imbalance = f.get("imbalance") or {}
    if imbalance.get("warn") and imbalance.get("smallest"):
        return f"add training images of '{imbalance['smallest']}', the smallest class"
    return "nothing urgent: the model and data look sound"


def sentences(f: dict[str, Any], level: str, per_class: dict[str, dict[str, Any]],
              advice: str) -> list[str]:
    """At most three sentences: the most confused pair, the data, the next step."""
    out = []
    pair = f.get("most_confused")
    if isinstance(pair, dict) and _n(pair.get("count")):
        out.append(f"Most confused: '{pair.get('true')}' taken for '{pair.get('predicted')}' "
                   f"{_plural(_n(pair['count']), 'time')}.")
    data = data_sentence(f, level)
    if data:
        out.append(data)
    out.append(f"Next step: {next_step(f, level, per_class, advice)}.")
    return out


__all__ = ["data_sentence", "label_suspects", "next_step", "sentences"]
