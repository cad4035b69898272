"""Safe dataset intake: check a dataset zip from its central directory, index its images in
place (they are read from the zip, never extracted) and find its splits and classes."""

from __future__ import annotations

import random
import stat
import unicodedata
import zipfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DatasetInvalid
from .ports import DatasetSplits

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class IntakeLimits:
    max_members: int = 200_000
    max_total_bytes: int = 20 * 1024**3
    # compressed / uncompressed size below which a member is a zip bomb (Apache POI's
    # ZipSecureFile default); members inflating to less than `ratio_grace_bytes` are not
    # checked (POI's grace size: a small blank image may compress well and harms no one)
    min_inflate_ratio: float = 0.01
    ratio_grace_bytes: int = 100 * 1024


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _checked_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The member's path parts; refuses escapes, absolute paths and links, naming the member."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetInvalid(f"archive member {name!r} is a symbolic link; links are refused")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise DatasetInvalid(f"archive member {name!r} has an absolute path; refused")
    parts = PurePosixPath(unified).parts
    if ".." in parts:
        raise DatasetInvalid(f"archive member {name!r} escapes the dataset folder ('..'); refused")
    return tuple(p for p in parts if p not in ("", "."))


def _find_root(names: list[tuple[str, ...]]) -> int:
    """How many leading parts to strip: 0 when train/ is at the root, 1 inside one top folder."""
    if any(len(p) > 1 and p[0] == "train" for p in names):
        return 0
    tops = {p[0] for p in names if len(p) > 1}
    if len(tops) == 1 and any(len(p) > 2 and p[1] == "train" for p in names):
        return 1
    raise DatasetInvalid(
        "archive has no train/<class>/<image> layout at its root or inside one top-level folder"
    )


def _check_ratio(info: zipfile.ZipInfo, limits: IntakeLimits) -> None:
    """Refuse a member that inflates more than 1/min_inflate_ratio times (a zip bomb), from
    its central-directory sizes, before anything is inflated."""
    if info.file_size < limits.ratio_grace_bytes or info.file_size == 0:
        return
    ratio = info.compress_size / info.file_size
    if ratio < limits.min_inflate_ratio:
        raise DatasetInvalid(
            f"archive member {info.filename!r} inflates {info.compress_size} bytes to "
            f"{info.file_size} (ratio {ratio:.4f}, below the minimum of "
            f"{limits.min_inflate_ratio:g}): refused as a zip bomb; images do not compress "
            "that well")


@dataclass(frozen=True)
class ArchivePlan:
    """What intake will write: each member with its path inside the dataset folder."""

    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]]
    total_bytes: int  # declared uncompressed size of those members


def plan_extraction(zf: zipfile.ZipFile, limits: IntakeLimits) -> ArchivePlan:
    """Everything checked from the central directory alone, before a byte is inflated:
    member count, paths, total declared size, each member's compression ratio, the layout."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise DatasetInvalid(
            f"archive has {len(infos)} members, more than the limit of {limits.max_members}"
        )
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    declared = 0
    for info in infos:
        parts = _checked_parts(info)  # refusals first, junk or not
        if info.is_dir() or not parts or _is_junk(parts):
            continue
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise DatasetInvalid(
                f"archive member {info.filename!r} takes the dataset to {declared} bytes "
                f"uncompressed, more than the limit of {limits.max_total_bytes}; refused"
            )
        members.append((info, parts))
    strip = _find_root([p for _, p in members])
    planned = []
    for info, parts in members:
        rel = parts[strip:]
        if len(rel) < 3 or rel[0] not in SPLITS:
            continue  # README, loose files: not part of the dataset
        _check_names(info, rel)
        _check_ratio(info, limits)
        planned.append((info, rel))
    _check_unique(planned)
    return ArchivePlan(planned, sum(info.file_size for info, _ in planned))


# bidirectional overrides and isolates: they make a name display as another ('\u202egod')
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def control_character(name: str) -> str | None:
    """The first control character (or bidirectional override) in `name`, as U+XXXX; None."""
    for ch in name:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI:
            return f"U+{ord(ch):04X}"
    return None


def _check_names(info: zipfile.ZipInfo, rel: tuple[str, ...]) -> None:
    """Class and file names reach logs, terminals and reports: no control characters (a
    newline, an escape sequence) and no bidirectional overrides."""
    for what, name in (("class name", rel[1]), ("file name", "/".join(rel[2:]))):
        if code := control_character(name):
            raise DatasetInvalid(
                f"archive member {info.filename!r}: {what} {name!r} contains the control "
                f"character {code}; refused (rename it)")


def _check_unique(planned: list[tuple[zipfile.ZipInfo, tuple[str, ...]]]) -> None:
    """Two entries for one path (a zip appended to, or crafted) are refused, not counted twice
    with the last one winning on disk: which copy is the image is ambiguous."""
    seen = Counter(rel for _, rel in planned)
    for info, rel in planned:
        if seen[rel] > 1:
            raise DatasetInvalid(
                f"archive member {info.filename!r} appears {seen[rel]} times (duplicate names: "
                "which copy is the image?); refused: rebuild the zip with each file once")


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetInvalid(f"dataset is not a readable zip archive: {exc}") from None


def inspect_archive(archive: Path, limits: IntakeLimits = IntakeLimits()) -> list[str]:
    """Every check that needs no inflating (see plan_extraction), plus the classes: at least
    two under train/, none under val/ or test/ that train/ lacks. Returns the class names.
    Reads the central directory only, so it is cheap on any size of zip."""
    with _open_zip(archive) as zf:
        plan = plan_extraction(zf, limits)
    found: dict[str, dict[str, list[str]]] = {s: defaultdict(list) for s in SPLITS}
    for info, rel in plan.members:
        found[rel[0]][rel[1]].append(info.filename)
    return check_classes(found)


def index_dataset(
    archive: Path, root: Path, limits: IntakeLimits = IntakeLimits()
) -> tuple[dict[str, dict[str, list[Path]]], dict[str, str]]:
    """The split folders of `archive`, indexed in place instead of extracted: split -> class
    -> each image's path inside the dataset folder `root` (nothing is written there), and
    each such path (relative to `root`, POSIX) -> its member's name in the zip.

    Every intake check is made from the central directory (plan_extraction); a member that
    turns out corrupt, or not the size it declares, is found when it is read (the trainer
    skips it as an unreadable image, and never inflates more than its declared size)."""
    with _open_zip(archive) as zf:
        plan = plan_extraction(zf, limits)
    found: dict[str, dict[str, list[Path]]] = {s: defaultdict(list) for s in SPLITS}
    members: dict[str, str] = {}
    for info, rel in plan.members:
        found[rel[0]][rel[1]].append(root.joinpath(*rel))
        members["/".join(rel)] = info.filename
    return {s: dict(c) for s, c in found.items()}, members


def open_dataset(archive: Path, root: Path, val_fraction: float, seed: int,
                 limits: IntakeLimits = IntakeLimits()) -> DatasetSplits:
    """The splits of a dataset zip, read in place: index_dataset, then build_splits."""
    found, members = index_dataset(archive, root, limits)
    return build_splits(root, found, val_fraction, seed, archive=archive, members=members)


def check_classes(found: Mapping[str, Mapping[str, Sequence[object]]]) -> list[str]:
    """The sorted class names of train/ (folders with files); refuses fewer than two, and a
    val/ or test/ class that train/ lacks."""
    class_names = sorted(c for c, files in found.get("train", {}).items() if files)
    if len(class_names) < 2:
        raise DatasetInvalid(
            f"train/ must hold at least two class folders with images; found {class_names or 'none'}"
        )
    for split in ("val", "test"):
        unknown = sorted(set(found.get(split, {})) - set(class_names))
        if unknown:
            raise DatasetInvalid(f"{split}/ names classes that train/ lacks: {', '.join(unknown)}")
    return class_names


def build_splits(
    root: Path, found: dict[str, dict[str, list[Path]]], val_fraction: float, seed: int,
    archive: Path | None = None, members: dict[str, str] | None = None,
) -> DatasetSplits:
    """Classes from train/, val/ held out (stratified, seeded) when missing, names checked;
    `archive` and `members` when the images are read from the zip (index_dataset)."""
    train = found.get("train", {})
    class_names = check_classes(found)
    index = {c: i for i, c in enumerate(class_names)}

    def labelled(split: str) -> list[tuple[Path, int]]:
        return [(f, index[c]) for c in sorted(found.get(split, {})) for f in sorted(found[split][c])]

    val = labelled("val")
    held_out = False
    if val:
        train_items = labelled("train")
    else:
        held_out = True
        rng = random.Random(seed)
        train_items = []
        for c in class_names:
            files = sorted(train[c])
            rng.shuffle(files)
            n_val = int(round(len(files) * val_fraction)) if len(files) > 1 else 0
            n_val = max(n_val, 1) if len(files) > 1 else 0
            val += [(f, index[c]) for f in files[:n_val]]
            train_items += [(f, index[c]) for f in files[n_val:]]
    return DatasetSplits(
        root=root, class_names=class_names, train=train_items, val=val, test=labelled("test"),
        val_held_out=held_out, archive=archive, members=members or {},
    )
