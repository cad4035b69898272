"""The dataset check on small real images: every planted problem is found and named; a clean
dataset yields no warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training_agent.adapters.trainers.dataset_check import Pixels, check_dataset, summary_line
from training_agent.adapters.trainers.images import decode_many
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.archive import open_dataset
from training_agent.testing.families import make_family_zip
from training_agent.testing.planted import make_planted_zip


def checked(zip_path: Path, dest: Path, cached: bool = True):
    splits = open_dataset(zip_path, dest, 0.15, 0)
    pixels, skipped = {}, {}
    locate = source_of(splits)  # members of the zip, read in place
    for name in ("train", "val", "test"):
        items = getattr(splits, name)
        array, ok, bad = decode_many([locate(p) for p, _ in items], 32, 2)
        pixels[name] = Pixels([items[i][0] for i in ok], torch.from_numpy(array)) \
            if cached else None
        skipped[name] = bad
    return splits, check_dataset(splits, 32, pixels, skipped)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    truth = make_planted_zip(tmp / "planted.zip")
    splits, report = checked(tmp / "planted.zip", tmp / "data")
    return truth, report


def test_counts_imbalance_and_missing_class(planted):
    truth, report = planted
    counts = report["counts"]
    assert counts["test"]["per_class"]["forest"] == 0
    assert report["counts"]["missing_from"] == {"test": ["forest"]}
    balance = report["balance"]
    assert balance["imbalanced"] and balance["smallest"]["class"] == "sea"
    assert balance["imbalance"] >= 8
    codes = {w["code"] for w in report["warnings"]}
    assert {"imbalance", "class_missing", "test_leak", "duplicates", "tiny", "blank",
            "extreme_aspect", "unreadable"} <= codes
    assert report["splits"]["val"]["origin"] == "held_out"
    assert report["splits"]["test"]["origin"] == "given"


def test_exact_and_near_copies_across_train_and_test_are_paired(planted):
    truth, report = planted
    dup = report["duplicates"]
    exact = {(p["a"], p["b"]) for p in dup["exact"]["listed"]}
    near = {(p["a"], p["b"]) for p in dup["near"]["listed"]}
    both = exact | near
    for src, dst in truth.exact_leaks:
        # the source may have been held out into val: still a pair, with the test copy
        assert (src, dst) in exact, (src, dst, exact)
    for src, dst in truth.near_leaks:
        assert (src, dst) in near, (src, dst, near)
    for pair in truth.train_duplicates:
        assert tuple(sorted(pair)) in {tuple(sorted(p)) for p in both}
    leak = dup["test_leak"]
    assert leak["images"] == len(truth.exact_leaks) + len(truth.near_leaks)
    assert leak["of"] == truth.test_images
    assert leak["share"] == pytest.approx(leak["images"] / truth.test_images, abs=1e-4)
    assert "inflate the test accuracy" in summary_line(report)
    # no false pairs: every listed pair is planted
    planted_pairs = set(truth.exact_leaks) | set(truth.near_leaks) | {
        tuple(sorted(p)) for p in truth.train_duplicates}
    for p in dup["exact"]["listed"] + dup["near"]["listed"]:
        assert (p["a"], p["b"]) in planted_pairs or tuple(sorted((p["a"], p["b"]))) in planted_pairs, p


def test_suspicious_and_unreadable_files_are_listed(planted):
    truth, report = planted
    sus = report["files"]["suspicious"]
    assert sorted(sus["tiny"]["listed"]) == sorted(truth.tiny)
    assert sorted(sus["blank"]["listed"]) == sorted(truth.blank)
    assert sus["extreme_aspect"]["listed"] == truth.extreme_aspect
    assert report["files"]["unreadable"]["count"] == 1
    assert "broken.jpg" in report["files"]["unreadable"]["listed"][0]
    assert report["files"]["modes"] and report["files"]["formats"]["JPEG"] > 100
    assert report["files"]["sizes"]["shorter_side"]["min"] == 8


def test_streamed_splits_give_the_same_duplicates(tmp_path):
    make_planted_zip(tmp_path / "p.zip", train=20, test=6, leaks=2, swapped=0)
    _, report = checked(tmp_path / "p.zip", tmp_path / "data", cached=False)
    assert report["duplicates"]["test_leak"]["images"] == 4


def test_a_clean_dataset_raises_no_warning(tmp_path):
    make_family_zip(tmp_path / "glyphs.zip", "glyphs", {"train": 10, "test": 3})
    _, report = checked(tmp_path / "glyphs.zip", tmp_path / "data")
    assert report["warnings"] == [], report["warnings"]
    assert report["duplicates"]["exact"]["pairs"] == 0
    assert report["duplicates"]["near"]["pairs"] == 0
    assert summary_line(report).endswith("no problems found")


def test_file_facts_read_by_decoding_processes_give_the_same_report(tmp_path, monkeypatch):
    """Over 4 x FACTS_CHUNK files the facts are read by processes (not threads that would
    hold Python's lock beside training): the report is the one the caller reads itself."""
    from training_agent.adapters.trainers import images

    make_planted_zip(tmp_path / "planted.zip")
    _, inline = checked(tmp_path / "planted.zip", tmp_path / "inline")
    facts: list[int] = []  # the files of each file_facts task the processes ran

    class Counted(images.DecodePool):
        def run(self, tasks):  # type: ignore[no-untyped-def]
            facts.extend(len(t[1]) for t in tasks if t[0] == "file_facts")
            return super().run(tasks)

    monkeypatch.setattr(images, "FACTS_CHUNK", 8)
    monkeypatch.setattr(images, "DecodePool", Counted)
    _, pooled = checked(tmp_path / "planted.zip", tmp_path / "pooled")
    every_file = inline["images"] + inline["files"]["unreadable"]["count"]
    assert len(facts) > 1 and sum(facts) == every_file  # every file, in processes
    assert {k: v for k, v in pooled.items() if k != "seconds"} == \
        {k: v for k, v in inline.items() if k != "seconds"}
    assert "BytesIO" not in pooled["summary"] and "broken.jpg" in pooled["summary"]


def test_counts_and_shares_are_of_the_readable_images(tmp_path):
    """Unreadable files (text, empty, cut short) are counted as skipped, not as images: a
    class whose test files are all unreadable is missing from test/, and the shares are of
    what training and evaluation see."""
    import zipfile

    make_family_zip(tmp_path / "glyphs.zip", "glyphs", {"train": 10, "test": 3})
    with zipfile.ZipFile(tmp_path / "glyphs.zip") as src:
        members = {n: src.read(n) for n in src.namelist() if not n.endswith("/")}
    tests = sorted(n for n in members if "/test/" in f"/{n}")
    first, second = sorted({n.split("/")[-2] for n in tests})[:2]
    junk = {"notes.txt": b"hello", "empty.jpg": b"", "cut.png": b"\x89PNG\r\n\x1a\nxx"}
    top = tests[0].split("test/")[0]
    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as out:
        for name, data in members.items():
            if f"test/{second}/" not in name:  # the second class's test images: all junk
                out.writestr(name, data)
        for cls in (first, second):
            for name, data in junk.items():
                out.writestr(f"{top}test/{cls}/{name}", data)
    splits, report = checked(tmp_path / "junk.zip", tmp_path / "data")
    counts = report["counts"]
    readable_test = len(splits.test) - 6
    assert counts["test"]["skipped"] == 6 and counts["test"]["images"] == readable_test
    assert counts["test"]["per_class"][first] == 3 and counts["test"]["per_class"][second] == 0
    assert counts["missing_from"] == {"test": [second]}
    assert report["images"] == len(splits.train) + len(splits.val) + readable_test
    assert report["duplicates"]["test_leak"]["of"] == readable_test
    assert report["files"]["unreadable"]["count"] == 6
    assert f"test {readable_test})" in report["summary"]
