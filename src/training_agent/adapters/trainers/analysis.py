"""The result analysis after training (`report.json`): per-class precision, recall and F1 on the
result split, the most confused class pairs with counts and example images, and suspected label
errors in the data.

One forward pass of the best weights over every split (eval mode, batched like validation)
gives each image's predicted probabilities and its embedding (the input of the model's last
linear layer, captured by a forward hook; the logits for a model without one).

Suspected label errors: `cleanlab.filter.find_label_issues` needs *out-of-sample* predicted
probabilities; the model's own probabilities on its training images are in-sample (a model that
fits its training set finds nothing). So each image's probabilities come from its `KNN_K`
nearest *other* images in the trained model's embedding space (cosine similarity, leave-one-out
vote of their labels, lightly smoothed): out-of-sample for every image of every split, and the
same idea as cleanlab's `Datalab` label check on `features`, without its extra dependencies.
cleanlab is an optional extra (`pip install 'training-agent[report]'`); without it the report
says so and lists none.

The neighbours are only as good as the embeddings: a model whose verdict is `chance` or `weak`
(domain/verdict.py) does not separate the classes, so most of its "suspects" are simply images
it has not learned (over 74 of them, nearly all false, on a 4-class scenes dataset at 0.45 test
accuracy). For such a model the suspects are not computed and the report says why
(`withheld`). For a sound model the list is capped at `MAX_SUSPECT_SHARE` of the images judged,
the least likely labels first: label noise in curated datasets is a few percent, and a longer
list says more about the model than about the labels."""

from __future__ import annotations

import base64
import importlib.util
import io
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training_agent.domain.archive import SPLITS

from .data import CachedSplit, StreamedSplit, chunks_of
from .evaluation import logits_of
from .images import load_image

KNN_K = 5
TOP_PAIRS = 10  # confused pairs listed
EXAMPLE_PAIRS, EXAMPLES_PER_PAIR = 3, 4  # thumbnails of the worst confusions
THUMB_PX = 64
LISTED_ISSUES = 100
UNRELIABLE = ("chance", "weak")  # verdict levels whose embeddings cannot judge labels
MAX_SUSPECT_SHARE = 0.05  # at most this share of the images judged is reported as suspects
INSTALL = "pip install 'training-agent[report]'"
METHOD = ("cleanlab.filter.find_label_issues on out-of-sample probabilities: a leave-one-out "
          f"{KNN_K}-nearest-neighbour vote in the trained model's embedding space")


class Predictions:
    """One split's rows: true labels, predicted probabilities, embeddings, file paths."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray, features: np.ndarray,
                 paths: Sequence[Path]) -> None:
        self.labels, self.probs, self.features, self.paths = labels, probs, features, paths


def _last_linear(model: torch.nn.Module) -> torch.nn.Module | None:
    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module
    return last


@torch.no_grad()
def predict(model: torch.nn.Module, split: CachedSplit | StreamedSplit,
            prepare: Callable[..., Any], batch_size: int, device: torch.device,
            autocast: Any) -> Predictions:
    was_training = model.training
    model.eval()
    seen: list[torch.Tensor] = []
    head = _last_linear(model)
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(
        args[0].detach().flatten(1).float().cpu())) if head is not None else None
    labels, probs, feats = [], [], []
    try:
        for images, y in split.batches(chunks_of(torch.arange(len(split)), batch_size)):
            seen.clear()
            with autocast():
                logits = logits_of(model(prepare(images))).float()
            probs.append(F.softmax(logits, dim=1).cpu())
            feats.append(seen[-1] if seen and len(seen[-1]) == len(logits) else logits.cpu())
            labels.append(y.cpu())
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    paths = list(getattr(split, "paths", []))
    if not labels:
        return Predictions(np.zeros(0, np.int64), np.zeros((0, 0)), np.zeros((0, 0)), paths)
    return Predictions(torch.cat(labels).numpy(), torch.cat(probs).numpy(),
                       torch.cat(feats).numpy(), paths)


def knn_probabilities(features: np.ndarray, labels: np.ndarray, classes: int,
                      k: int = KNN_K) -> np.ndarray:
    """Leave-one-out probabilities: each row from its k nearest other rows' labels (cosine
    similarity), smoothed so that no class is impossible."""
    n = len(features)
    x = F.normalize(torch.from_numpy(features).float(), dim=1)
    y = torch.from_numpy(labels).long()
    k = max(1, min(k, n - 1))
    out = torch.zeros(n, classes)
    for lo in range(0, n, 2048):
        sim = x[lo:lo + 2048] @ x.T
        rows = torch.arange(lo, min(lo + 2048, n))
        sim[rows - lo, rows] = -2.0  # never one's own neighbour
        top = sim.topk(k, dim=1).indices
        out[lo:lo + 2048] = F.one_hot(y[top], classes).float().sum(dim=1)
    prior = torch.bincount(y, minlength=classes).float() / max(1, n)
    return ((out + 0.5 * prior) / (k + 0.5)).numpy()


def withheld(level: str, available: bool) -> dict[str, Any]:
    """The label-issue section of a model too poor to judge labels by: nothing computed."""
    return {"available": available, "method": None, "count": 0, "listed": [],
            "withheld": level,
            "note": f"not computed: the model's verdict is '{level}', so its embeddings do not "
                    "separate the classes well enough for an image's neighbours to judge its "
                    "label (most suspects would be images the model has not learned, not "
                    "mislabelled ones); improve the model first, and the next training's "
                    "report will list them"}


def label_issues(preds: Mapping[str, Predictions], names: list[str], root: Path,
                 level: str | None = None) -> dict[str, Any]:
    """Suspected label errors over every split (see the module's docstring); none for a
    model whose verdict `level` is `chance` or `weak`."""
    if level in UNRELIABLE:  # before the import: cleanlab takes seconds to import
        return withheld(str(level), importlib.util.find_spec("cleanlab") is not None)
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return {"available": False, "method": None, "count": 0, "listed": [],
                "note": f"cleanlab is not installed: {INSTALL} to find suspected label errors"}
    rows = [(s, i) for s in SPLITS if s in preds for i in range(len(preds[s].labels))
            if preds[s].labels[i] >= 0]
    if len(rows) < 2 * len(names) or len(rows) <= KNN_K:
        return {"available": True, "method": METHOD, "count": 0, "listed": [],
                "note": "too few images to judge labels"}
    feats = np.concatenate([preds[s].features[i][None] for s, i in rows])
    labels = np.array([preds[s].labels[i] for s, i in rows], dtype=np.int64)
    probs = knn_probabilities(feats, labels, len(names))
    present = np.bincount(labels, minlength=len(names)) > 0
    if present.sum() < 2:
        return {"available": True, "method": METHOD, "count": 0, "listed": [],
                "note": "fewer than two classes"}
    try:
        ranked = find_label_issues(labels, probs, filter_by="prune_by_noise_rate",
                                   return_indices_ranked_by="self_confidence",
                                   n_jobs=1)
    except Exception as exc:  # cleanlab refusing odd data never fails the job
        return {"available": True, "method": METHOD, "count": 0, "listed": [],
                "note": f"cleanlab failed: {type(exc).__name__}: {exc}"}
    cap = max(1, int(MAX_SUSPECT_SHARE * len(rows)))
    flagged = len(ranked)
    listed = []
    for idx in ranked[:cap]:  # ranked by self-confidence: the least likely labels first
        s, i = rows[int(idx)]
        path = preds[s].paths[i] if i < len(preds[s].paths) else None
        listed.append({
            "path": _rel(path, root) if path is not None else f"{s}#{i}", "split": s,
            "given": names[int(labels[idx])], "suggested": names[int(probs[idx].argmax())],
            "given_label_quality": round(float(probs[idx][labels[idx]]), 3)})
    by_split: dict[str, int] = {}
    for row in listed:
        by_split[row["split"]] = by_split.get(row["split"], 0) + 1
    out = {"available": True, "method": METHOD, "count": len(listed), "by_split": by_split,
           "of": len(rows), "flagged": flagged, "cap": cap, "listed": listed[:LISTED_ISSUES]}
    if flagged > cap:
        out["note"] = (f"cleanlab flagged {flagged} of {len(rows)} images "
                       f"({flagged / len(rows):.0%}); only the {cap} least likely labels "
                       f"({MAX_SUSPECT_SHARE:.0%} of the images) are reported: a longer list "
                       "says more about the model than about the labels")
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def confused_pairs(cm: list[list[int]], names: list[str]) -> list[dict[str, Any]]:
    """Off-diagonal cells, largest first: `true` images taken for `predicted`."""
    cells = [(cm[i][j], i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j
             and cm[i][j] > 0]
    cells.sort(key=lambda c: (-c[0], names[c[1]], names[c[2]]))
    out = []
    for count, i, j in cells[:TOP_PAIRS]:
        row = sum(cm[i])
        out.append({"true": names[i], "predicted": names[j], "count": int(count),
                    "share_of_true": round(count / row, 4) if row else 0.0})
    return out


def _thumbnail(split: CachedSplit | StreamedSplit, row: int, path: Path | None) -> str | None:
    """A small PNG (base64) of one image: from the cache when it holds it, else decoded."""
    from PIL import Image

    try:
        if isinstance(split, CachedSplit):
            array = split.images[row].permute(1, 2, 0).cpu().numpy()
        elif path is not None:  # streamed: decoded from where its bytes are
            array = load_image(split.sources[row] if row < len(split.sources) else path,
                               THUMB_PX)
        else:
            return None
        img = Image.fromarray(np.ascontiguousarray(array))
        if img.size[0] != THUMB_PX:
            img = img.resize((THUMB_PX, THUMB_PX), Image.Resampling.NEAREST
                             if img.size[0] < THUMB_PX else Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def examples(pairs: list[dict[str, Any]], pred: Predictions, split: CachedSplit | StreamedSplit,
             names: list[str], root: Path) -> list[dict[str, Any]]:
    """For the worst confused pairs: the images of `true` the model took most surely for
    `predicted`, with a thumbnail each."""
    index = {n: i for i, n in enumerate(names)}
    if len(pred.labels) == 0:
        return []
    guessed = pred.probs.argmax(axis=1)
    out = []
    for pair in pairs[:EXAMPLE_PAIRS]:
        t, p = index[pair["true"]], index[pair["predicted"]]
        rows = np.nonzero((pred.labels == t) & (guessed == p))[0]
        rows = rows[np.argsort(-pred.probs[rows, p])][:EXAMPLES_PER_PAIR]
        shown = []
        for r in rows.tolist():
            path = pred.paths[r] if r < len(pred.paths) else None
            shown.append({"path": _rel(path, root) if path else None,
                          "confidence": round(float(pred.probs[r, p]), 3),
                          "thumbnail_png_base64": _thumbnail(split, r, path)})
        out.append({**pair, "images": shown})
    return out


def analyse(model: torch.nn.Module, data: Mapping[str, CachedSplit | StreamedSplit],
            prepare: Callable[..., Any], batch_size: int, device: torch.device, autocast: Any,
            names: list[str], metrics: dict[str, Any], root: Path,
            dataset_report: dict[str, Any] | None,
            known: Mapping[str, Predictions] | None = None) -> dict[str, Any]:
    """The result analysis (`report.json`'s body) and `findings`, the compact object the
    status views carry and the summary is written from. `known`: splits already predicted
    by the same model (the evaluation's pass over validation and test), not run again."""
    t0 = time.monotonic()
    parts: dict[str, float] = {}
    cm = metrics["confusion_matrix"]
    split = cm["split"]
    verdict = metrics.get("verdict")
    level = verdict.get("level") if isinstance(verdict, dict) else None
    # the label check needs every split; without it (withheld) the result split's examples
    # are all that is left to predict: the training set's forward pass is saved
    wanted = [split] if level in UNRELIABLE else list(data)
    known = known or {}
    preds = {s: known[s] if s in known else predict(model, data[s], prepare, batch_size,
                                                    device, autocast)
             for s in wanted if s in data and len(data[s])}
    parts["predict"] = time.monotonic() - t0
    pairs = confused_pairs(cm["matrix"], names)
    shown = examples(pairs, preds[split], data[split], names, root) if split in preds else []
    parts["examples"] = time.monotonic() - t0 - sum(parts.values())
    issues = label_issues(preds, names, root, level)
    parts["label_issues"] = time.monotonic() - t0 - sum(parts.values())
    report = {
        "result_split": split,
        "accuracy": metrics.get(f"{split}_accuracy"),
        "chance": round(1 / len(names), 4),
        "per_class": metrics["per_class"],
        "confused_pairs": pairs,
        "worst_confusions": shown,
        "label_issues": issues,
        "seconds": 0.0,
    }
    report["findings"] = findings(report, dataset_report, len(names))
    report["seconds"] = round(time.monotonic() - t0, 3)
    report["seconds_by_part"] = {k: round(v, 3) for k, v in parts.items()}
    return report


def findings(report: dict[str, Any], dataset: dict[str, Any] | None,
             classes: int) -> dict[str, Any]:
    """What the summary is written from (domain/verdict.summarize): plain numbers and names."""
    pairs = report["confused_pairs"]
    issues = report["label_issues"]
    out: dict[str, Any] = {
        "classes": classes, "chance": report["chance"], "result_split": report["result_split"],
        "most_confused": ({k: pairs[0][k] for k in ("true", "predicted", "count")}
                          if pairs else None),
        "label_issues": {"available": issues["available"], "count": issues["count"],
                         "method": "cleanlab find_label_issues, leave-one-out KNN on the "
                                   "model's embeddings" if issues.get("method") else None,
                         **({"install": INSTALL} if not issues["available"] else {}),
                         **({"withheld": issues["withheld"]} if "withheld" in issues else {})},
    }
    if dataset:
        dup = dataset["duplicates"]
        within = sum(n for k, n in dup["exact"]["by_splits"].items() if k.startswith("within")) \
            + sum(n for k, n in dup["near"]["by_splits"].items() if k.startswith("within"))
        sus = dataset["files"]["suspicious"]
        out.update({
            "test_leak": {k: dup["test_leak"][k] for k in ("images", "of", "share")},
            "duplicate_pairs_within_splits": within,
            "label_conflicts": dup["label_conflicts"]["pairs"],
            "imbalance": {"ratio": dataset["balance"]["imbalance"],
                          "smallest": dataset["balance"]["smallest"]["class"],
                          "warn": dataset["balance"]["imbalanced"]},
            "missing_from_test": dataset["counts"]["missing_from"].get("test", []),
            "suspicious_files": {k: v["count"] for k, v in sus.items() if k != "much_larger"},
            "unreadable": dataset["files"]["unreadable"]["count"],
            "train_images": dataset["counts"]["train"]["images"],
        })
    return out


__all__ = ["MAX_SUSPECT_SHARE", "METHOD", "UNRELIABLE", "analyse", "confused_pairs", "findings",
           "knn_probabilities", "label_issues", "predict", "withheld"]
