"""The dataset check: what is wrong with a dataset before it costs a training run.

Run once in the trainer's preparing step, on what the decode already produced (the uint8 cache
of each split) plus one cheap pass over the files (a content hash and PIL's header: size, mode,
format; nothing is decoded again). It informs and never refuses: only what intake already
refuses is refused. The report (`dataset_report.json`) holds:

- counts per class and split of the readable images (the unreadable counted apart);
  imbalance (largest / smallest training class) with a warning above `IMBALANCE_WARN`;
  classes present in train/ and missing from val/ or test/;
- exact duplicates (same file bytes, sha256) and near-duplicates (a 128-bit difference hash of
  the decoded image — 64 bits from horizontal and 64 from vertical neighbours on a 9x8 grey
  thumbnail — within `NEAR_BITS` bits, confirmed by a correlation of 16x16 colour thumbnails of
  at least `NEAR_CORRELATION`) within a split and across splits, with the pairs and the
  share of the test split that copies a training or validation image (it inflates the score);
  duplicates of one picture filed under two classes;
- unreadable files (skipped) and suspicious ones: tiny (shorter side below `tiny_side`),
  extreme aspect (`ASPECT_WARN`:1 or more), mostly blank (`BLANK_SHARE` of the pixels within
  `BLANK_LEVELS` grey levels of the median), much larger than the training size (shorter side
  over `LARGE_FACTOR` times it); the mix of sizes, colour modes and formats;
- whether val/ and test/ were given or held out, and how.

Images that are not in a cache (a split streamed from disk, another rank's shard) are decoded
once more at 32 px for their hash (JPEG draft decoding makes that cheap)."""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training_agent.domain.archive import SPLITS
from training_agent.domain.ports import DatasetSplits

from .images import decode_many, facts_of
from .sources import Source, source_of

IMBALANCE_WARN = 5.0  # largest / smallest training class above this: a warning
NEAR_BITS = 48  # of 128 hash bits: at most this many differ -> a near-duplicate candidate
ASPECT_WARN = 4.0  # longer / shorter side at or above this: extreme aspect
BLANK_SHARE, BLANK_LEVELS = 0.98, 12  # mostly blank: 98 % of pixels within 12 grey levels
LARGE_FACTOR = 8  # shorter side over 8x the training size: much larger than needed
MIN_TINY_SIDE = 16  # tiny: shorter side below max(16, image_size / 4)
LISTED = 50  # pairs and files listed per kind (the counts are always complete)
HASH_SIZE = 32  # decode size for images not in a cache
THUMB = 16  # near-duplicate candidates are confirmed on 16 x 16 colour thumbnails
NEAR_CORRELATION = 0.985  # ... whose correlation must reach this (calibrated: re-encoded copies
# score 0.99+, the closest distinct images of the generated families up to 0.972; a copy's
# hash differs in up to ~40 bits on a flat, noisy background, two unrelated images' in ~64)
FORMAT = "training-agent/dataset-report"
POOL = 64  # the features are computed on images area-averaged to at most 64 x 64 (pooled)
CHUNK = 1024  # images pooled at a time
GATHER_SHARE = 1000  # a block's candidates under 1/1000 of its pairs: correlated pair by pair


@dataclass
class Item:
    split: str
    path: Path
    label: int
    rel: str  # path inside the dataset (archive path below its top folder)
    source: Source  # where its bytes are (a member of the dataset's zip, or the file)
    sha256: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    bytes: int = 0
    error: str | None = None


@dataclass
class Pixels:
    """A split's decoded cache: the paths it holds, in row order, and the uint8 N x 3 x S x S
    images (any device)."""

    paths: Sequence[Path]
    images: torch.Tensor


def _file_facts(items: list[Item], threads: int) -> None:
    """Each item's bytes, sha256 and header facts (images.facts_of: in the decoding
    processes, so that the check does not hold Python's lock beside the training loop)."""
    facts = facts_of([it.source for it in items], threads)
    for it, (size, digest, width, height, mode, fmt, error) in zip(items, facts, strict=True):
        it.bytes, it.sha256, it.width, it.height = size, digest, width, height
        it.mode, it.format, it.error = mode, fmt, error


def pooled(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W (uint8, any device) -> float, area-averaged to at most POOL x POOL: what
    the hash, the blank test and the thumbnails are computed on (a 224 px cache is read
    once, and the per-image median runs on 4,096 pixels instead of 50,176)."""
    x = images.float()
    if max(x.shape[-2:]) > POOL:
        x = F.adaptive_avg_pool2d(x, (min(POOL, x.shape[-2]), min(POOL, x.shape[-1])))
    return x


def _features(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hash bits, blank flags and thumbnails (on the CPU) of uint8 images, from `pooled`."""
    x = pooled(images)
    return dhash_bits(x), blank_flags(x), thumbnails(x)


def dhash_bits(images: torch.Tensor) -> torch.Tensor:
    """N x 128 bool: a difference hash of each N x 3 x H x W image (grey, area-resized
    to 9x8 and 8x9; a bit says whether a cell is brighter than its right / lower neighbour)."""
    if len(images) == 0:
        return torch.zeros(0, 128, dtype=torch.bool)
    grey = images.float().mean(dim=1, keepdim=True)
    wide = F.adaptive_avg_pool2d(grey, (8, 9))[:, 0]
    tall = F.adaptive_avg_pool2d(grey, (9, 8))[:, 0]
    rows = (wide[:, :, 1:] > wide[:, :, :-1]).flatten(1)
    cols = (tall[:, 1:, :] > tall[:, :-1, :]).flatten(1)
    return torch.cat([rows, cols], dim=1).cpu()


def blank_flags(images: torch.Tensor) -> torch.Tensor:
    """N bool: mostly blank (BLANK_SHARE of the pixels within BLANK_LEVELS of the image's
    median colour in every channel), on images as `pooled` gives them (the average of each
    cell of a 64 x 64 grid: pixel noise on a blank image averages out)."""
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.bool)
    flat = images.float().flatten(2)  # N x 3 x pixels
    median = flat.median(dim=2, keepdim=True).values
    near = ((flat - median).abs() <= BLANK_LEVELS).all(dim=1)
    return (near.float().mean(dim=1) >= BLANK_SHARE).cpu()


def thumbnails(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x 16 x 16 uint8 (area-resized): what a near-duplicate candidate is confirmed on."""
    if len(images) == 0:
        return torch.zeros(0, 3, THUMB, THUMB, dtype=torch.uint8)
    return F.adaptive_avg_pool2d(images.float(), (THUMB, THUMB)).round().to(torch.uint8).cpu()


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of paired thumbnails (rows of a and b), over all three channels."""
    x, y = a.flatten(1).float(), b.flatten(1).float()
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    den = (x.norm(dim=1) * y.norm(dim=1)).clamp(min=1e-6)
    return (x * y).sum(dim=1) / den


def close_pairs(bits: torch.Tensor, max_bits: int, thumbs: torch.Tensor | None = None,
                min_corr: float = 0.0, block: int = 2048) -> list[tuple[int, int, int]]:
    """(i, j, differing bits) for i < j whose hashes differ in at most `max_bits` bits (one
    matrix product per block of +-1 vectors: exact, no index) and, given `thumbs`, whose
    thumbnails correlate at least `min_corr`: for a block with few candidates, computed on
    those pairs alone; for one with many (images alike, e.g. 10 % of all pairs of 2,000
    generated scenes), by one more matrix product of the centred unit thumbnails, cheaper
    then than gathering the pairs. On the device of `bits` (the GPU where the cache is)."""
    n = len(bits)
    if n < 2:
        return []
    signs = bits.float() * 2 - 1
    width = bits.shape[1]
    unit = None
    if thumbs is not None:
        flat = thumbs.flatten(1).float().to(bits.device)
        unit = F.normalize(flat - flat.mean(dim=1, keepdim=True), dim=1)
    columns = torch.arange(n, device=bits.device)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        dots = signs[start:start + block] @ signs.T
        dist = ((width - dots) / 2).round().long()
        hit = (dist <= max_bits) & (columns[start:start + block, None] < columns[None, :])
        rows, cols = torch.nonzero(hit, as_tuple=True)
        if unit is not None and len(rows) * GATHER_SHARE <= hit.numel():
            keep = torch.cat([(unit[start + rows[k:k + 65536]] * unit[cols[k:k + 65536]])
                              .sum(dim=1) >= min_corr for k in range(0, len(rows), 65536)]
                             or [torch.zeros(0, dtype=torch.bool, device=bits.device)])
            rows, cols = rows[keep], cols[keep]
        elif unit is not None:
            hit &= (unit[start:start + block] @ unit.T) >= min_corr
            rows, cols = torch.nonzero(hit, as_tuple=True)
        out += zip((rows + start).tolist(), cols.tolist(), dist[rows, cols].tolist(),
                   strict=True)
    return out


def _pair_kind(a: str, b: str) -> str:
    return "-".join(sorted((a, b), key=SPLITS.index)) if a != b else f"within {a}"


def check_dataset(splits: DatasetSplits, image_size: int,
                  pixels: Mapping[str, Pixels | None], skipped: Mapping[str, Sequence[str]],
                  threads: int = 2) -> dict[str, Any]:
    """The dataset report (see the module's docstring): a JSON-ready dict with `summary`
    (one line for the logs) and `warnings` (each `{code, text}`)."""
    t0 = time.monotonic()
    names = splits.class_names
    locate = source_of(splits)
    items = [Item(s, p, lab, _rel(p, splits.root), locate(p)) for s in SPLITS
             for p, lab in getattr(splits, s)]
    _file_facts(items, threads)
    bits, blank, thumbs, device = _hashes(items, pixels, threads)
    warnings: list[dict[str, str]] = []
    # counted, and every share's denominator, are the readable images: what training and
    # evaluation see (the unreadable are counted apart, as skipped)
    counts = _counts([it for it in items if it.error is None], names, skipped, warnings)
    report: dict[str, Any] = {"format": FORMAT, "format_version": 1,
                              "image_size": image_size,
                              "images": sum(counts[s]["images"] for s in SPLITS)}
    report["splits"] = _split_origin(splits)
    report["counts"] = counts
    report["balance"] = _balance(counts, names, warnings)
    report["duplicates"] = _duplicates(items, bits, blank, thumbs, names, warnings, device,
                                       {s: counts[s]["images"] for s in SPLITS})
    report["files"] = _files(items, blank, image_size, skipped, warnings)
    report["warnings"] = warnings
    report["seconds"] = round(time.monotonic() - t0, 3)
    report["summary"] = summary_line(report)
    return report


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _hashes(items: list[Item], pixels: Mapping[str, Pixels | None],
            threads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.device]:
    """Each item's difference hash, blank flag and thumbnail, from the cache where it has
    the image."""
    device = torch.device("cpu")  # where the pairs are compared: the cache's device
    bits = torch.zeros(len(items), 128, dtype=torch.bool)
    thumbs = torch.zeros(len(items), 3, THUMB, THUMB, dtype=torch.uint8)
    blank = torch.zeros(len(items), dtype=torch.bool)
    known = torch.zeros(len(items), dtype=torch.bool)
    where = {(it.split, it.path): i for i, it in enumerate(items)}
    for split, px in pixels.items():
        if px is None or len(px.paths) == 0:
            continue
        rows = [where.get((split, p)) for p in px.paths]
        keep = [r for r, i in enumerate(rows) if i is not None]
        index = torch.tensor([rows[r] for r in keep], dtype=torch.long)
        chosen = torch.tensor(keep, device=px.images.device) if len(keep) != len(rows) else None
        for lo in range(0, len(index), CHUNK):  # bounded float copies of a large cache
            at = index[lo:lo + CHUNK]
            part = (px.images[lo:lo + CHUNK] if chosen is None
                    else px.images[chosen[lo:lo + CHUNK]])
            bits[at], blank[at], thumbs[at] = _features(part)
        known[index] = True
        device = px.images.device
    missing = [i for i in range(len(items)) if not known[i] and items[i].error is None]
    if missing:
        array, ok, _ = decode_many([items[i].source for i in missing], HASH_SIZE, threads)
        done = torch.tensor([missing[k] for k in ok], dtype=torch.long)
        bits[done], blank[done], thumbs[done] = _features(torch.from_numpy(array))
        known[done] = True
    for i in range(len(items)):
        if not known[i] and items[i].error is None:
            items[i].error = "unreadable"
    return bits, blank, thumbs, device


def _split_origin(splits: DatasetSplits) -> dict[str, Any]:
    val = ("held out: a stratified, seeded share of train/ (val_fraction of each class; no "
           "val/ folder was given)" if splits.val_held_out else "given (val/ folder)")
    if not splits.val:
        val = "none: no class had images to spare, so the last epoch's weights are kept"
    test = ("given (test/ folder)" if splits.test else
            "none: no test/ folder, so the result is judged on the validation split")
    return {"val": {"origin": "held_out" if splits.val_held_out else
                    ("given" if splits.val else "none"), "how": val},
            "test": {"origin": "given" if splits.test else "none", "how": test}}


def _counts(items: list[Item], names: list[str], skipped: Mapping[str, Sequence[str]],
            warnings: list[dict[str, str]]) -> dict[str, Any]:
    per: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    for it in items:
        per[it.split][names[it.label]] += 1
    out: dict[str, Any] = {s: {"images": sum(per[s].values()),
                               "per_class": {c: per[s][c] for c in names},
                               "skipped": len(skipped.get(s, []))} for s in SPLITS}
    missing: dict[str, list[str]] = {}
    for split in ("val", "test"):
        if out[split]["images"]:
            gone = [c for c in names if per[split][c] == 0]
            if gone:
                missing[split] = gone
                warnings.append({"code": "class_missing", "text": (
                    f"{len(gone)} class{'es' if len(gone) > 1 else ''} missing from {split}/: "
                    f"{', '.join(repr(c) for c in gone[:10])}: "
                    f"{'their accuracy is never tested' if split == 'test' else 'never validated'}")})
    out["missing_from"] = missing
    return out


def _balance(counts: dict[str, Any], names: list[str],
             warnings: list[dict[str, str]]) -> dict[str, Any]:
    train = counts["train"]["per_class"]
    sizes = {c: train[c] for c in names}
    largest = max(sizes, key=lambda c: sizes[c])
    smallest = min(sizes, key=lambda c: sizes[c])
    ratio = sizes[largest] / sizes[smallest] if sizes[smallest] else float("inf")
    out = {"largest": {"class": largest, "images": sizes[largest]},
           "smallest": {"class": smallest, "images": sizes[smallest]},
           "imbalance": round(ratio, 2) if ratio != float("inf") else None,
           "warn_above": IMBALANCE_WARN, "imbalanced": ratio > IMBALANCE_WARN}
    if ratio > IMBALANCE_WARN:
        warnings.append({"code": "imbalance", "text": (
            f"classes are imbalanced {ratio:.1f}:1 in train ('{largest}' {sizes[largest]} "
            f"images, '{smallest}' {sizes[smallest]}; warning above {IMBALANCE_WARN:g}:1): "
            f"add images of '{smallest}'")})
    return out


def _duplicates(items: list[Item], bits: torch.Tensor, blank: torch.Tensor,
                thumbs: torch.Tensor, names: list[str], warnings: list[dict[str, str]],
                device: torch.device, sizes: Mapping[str, int]) -> dict[str, Any]:
    """`sizes`: the readable images of each split (the leaks' shares are of these)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.error is None:
            by_hash[it.sha256].append(i)
    exact: list[tuple[int, int, int]] = []
    for group in by_hash.values():
        exact += [(a, b, 0) for k, a in enumerate(group) for b in group[k + 1:]]
    same_file = {(a, b) for a, b, _ in exact}
    usable = [i for i, it in enumerate(items) if it.error is None and not blank[i]]
    # candidates by hash, confirmed on the thumbnails: a hash alone confuses flat or periodic
    # images, and noise flips many bits of a flat one
    near = [(usable[a], usable[b], d) for a, b, d in
            close_pairs(bits[usable].to(device), NEAR_BITS, thumbs[usable].to(device),
                        NEAR_CORRELATION)
            if (usable[a], usable[b]) not in same_file]

    def listed(pairs: list[tuple[int, int, int]], kind: str) -> dict[str, Any]:
        by_kind = Counter(_pair_kind(items[a].split, items[b].split) for a, b, _ in pairs)
        ordered = sorted(pairs, key=lambda p: (items[p[0]].split == items[p[1]].split, p[2]))
        return {"pairs": len(pairs), "by_splits": dict(by_kind),
                "listed": [{"a": items[a].rel, "a_split": items[a].split,
                            "b": items[b].rel, "b_split": items[b].split,
                            "same_label": items[a].label == items[b].label,
                            **({"bits_differing": d} if kind == "near" else {})}
                           for a, b, d in ordered[:LISTED]]}

    both = exact + near
    # test images that copy (exactly or nearly) a train or val image: they inflate the score
    leaked = {b if items[b].split == "test" else a for a, b, _ in both
              if {items[a].split, items[b].split} & {"test"}
              and {items[a].split, items[b].split} & {"train", "val"}}
    val_leaked = {b if items[b].split == "val" else a for a, b, _ in both
                  if {items[a].split, items[b].split} == {"train", "val"}}
    n_test, n_val = sizes["test"], sizes["val"]
    conflicts = [(a, b) for a, b, _ in both if items[a].label != items[b].label]
    out = {"method": {"exact": "sha256 of the file bytes",
                      "near": f"128-bit difference hash of the decoded image, at most "
                              f"{NEAR_BITS} bits differing, confirmed by a correlation of at "
                              f"least {NEAR_CORRELATION:g} between 16x16 colour thumbnails "
                              "(blank images left out)"},
           "exact": listed(exact, "exact"), "near": listed(near, "near"),
           "test_leak": {"images": len(leaked), "of": n_test,
                         "share": round(len(leaked) / n_test, 4) if n_test else 0.0,
                         "listed": sorted(items[i].rel for i in leaked)[:LISTED]},
           "val_leak": {"images": len(val_leaked), "of": n_val,
                        "share": round(len(val_leaked) / n_val, 4) if n_val else 0.0},
           "label_conflicts": {"pairs": len(conflicts), "listed": [
               {"a": items[a].rel, "a_class": names[items[a].label], "b": items[b].rel,
                "b_class": names[items[b].label]} for a, b in conflicts[:LISTED]]}}
    if leaked:
        warnings.append({"code": "test_leak", "text": (
            f"{len(leaked)} of {n_test} test images ({len(leaked) / n_test:.0%}) are exact or "
            "near copies of training or validation images: they inflate the test accuracy; "
            "remove them from test/ (or from train/)")})
    if val_leaked:
        warnings.append({"code": "val_leak", "text": (
            f"{len(val_leaked)} of {n_val} validation images copy training images: the best "
            "epoch is picked on images the model has seen")})
    within = sum(1 for a, b, _ in both if items[a].split == items[b].split)
    if within:
        warnings.append({"code": "duplicates", "text": (
            f"{within} pairs of duplicate or near-duplicate images within a split: they weigh "
            "twice in training; drop the copies")})
    if conflicts:
        warnings.append({"code": "label_conflict", "text": (
            f"{len(conflicts)} pairs of copies of one picture are filed under different "
            "classes: at least one of each pair is mislabelled")})
    return out


def _files(items: list[Item], blank: torch.Tensor, image_size: int,
           skipped: Mapping[str, Sequence[str]], warnings: list[dict[str, str]]) -> dict[str, Any]:
    ok = [(i, it) for i, it in enumerate(items) if it.error is None]
    tiny_side = max(MIN_TINY_SIDE, image_size // 4)
    flags: dict[str, list[str]] = {"tiny": [], "extreme_aspect": [], "blank": [],
                                   "much_larger": []}
    for i, it in ok:
        short, long_ = min(it.width, it.height), max(it.width, it.height)
        if short and short < tiny_side:
            flags["tiny"].append(it.rel)
        if short and long_ / short >= ASPECT_WARN:
            flags["extreme_aspect"].append(it.rel)
        if blank[i]:
            flags["blank"].append(it.rel)
        if short > LARGE_FACTOR * image_size:
            flags["much_larger"].append(it.rel)
    words = {"tiny": f"tiny (shorter side below {tiny_side} px)",
             "extreme_aspect": f"of extreme aspect ({ASPECT_WARN:g}:1 or more; squashed to a "
                               "square in training)",
             "blank": "mostly blank",
             "much_larger": f"much larger than the training size (shorter side over "
                            f"{LARGE_FACTOR * image_size} px: decoding them costs time for "
                            "nothing)"}
    for code, files in flags.items():
        if files and code != "much_larger":
            warnings.append({"code": code, "text": (
                f"{len(files)} image{'s are' if len(files) > 1 else ' is'} {words[code]}: "
                + ", ".join(files[:5]) + (" …" if len(files) > 5 else ""))})
    unreadable = [f"{s}/{e}" for s in SPLITS for e in skipped.get(s, [])]
    if unreadable:
        warnings.append({"code": "unreadable", "text": (
            f"{len(unreadable)} unreadable images were skipped: " + "; ".join(unreadable[:5]))})
    shorts = [min(it.width, it.height) for _, it in ok]
    return {
        "unreadable": {"count": len(unreadable), "listed": unreadable[:LISTED]},
        "suspicious": {code: {"count": len(files), "rule": words[code], "listed": files[:LISTED]}
                       for code, files in flags.items()},
        "sizes": {
            "width": _spread([it.width for _, it in ok]),
            "height": _spread([it.height for _, it in ok]),
            "shorter_side": _spread(shorts),
            "shorter_side_buckets": _buckets(shorts),
            "distinct_sizes": len({(it.width, it.height) for _, it in ok}),
        },
        "modes": dict(Counter(it.mode for _, it in ok).most_common()),
        "formats": dict(Counter(it.format for _, it in ok).most_common()),
        "bytes": sum(it.bytes for _, it in ok),
    }


def _spread(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _buckets(values: list[int]) -> dict[str, int]:
    edges = [16, 32, 64, 128, 256, 512, 1024, 2048]
    out: Counter[str] = Counter()
    for v in values:
        low = max([0] + [e for e in edges if v >= e])
        high = next((e for e in edges if v < e), None)
        out[f"{low}-{high - 1}" if high else f"{low}+"] += 1
    return {k: out[k] for k in sorted(out, key=lambda k: int(k.split("-")[0].rstrip("+")))}


def summary_line(report: dict[str, Any]) -> str:
    """One line for agent_logs: the counts, then every warning's text, or that none fired."""
    c = report["counts"]
    how = report["splits"]
    val = f"val {c['val']['images']}" + (" held out" if how["val"]["origin"] == "held_out"
                                         else "")
    test = f"test {c['test']['images']}" if c["test"]["images"] else "no test split"
    head = (f"dataset check: {report['images']} images "
            f"(train {c['train']['images']}, {val}, {test})")
    if not report["warnings"]:
        return head + "; no problems found"
    return head + "; ⚠️ " + "; ".join(w["text"] for w in report["warnings"])


def pixels_of(paths: Sequence[Path], images: np.ndarray | torch.Tensor) -> Pixels:
    return Pixels(paths, images if isinstance(images, torch.Tensor) else torch.from_numpy(images))


__all__ = ["IMBALANCE_WARN", "NEAR_BITS", "Pixels", "check_dataset", "close_pairs",
           "dhash_bits", "summary_line"]
