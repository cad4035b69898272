"""Dataset intake: layouts accepted, every hostile or unusable archive refused by name."""

from __future__ import annotations

import re
import stat
import time
import zipfile
from pathlib import Path

import pytest

from training_agent.domain.archive import IntakeLimits, build_splits, index_dataset
from training_agent.domain.errors import DatasetInvalid

IMG = b"\xff\xd8 not decoded here"


def write_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None,
              compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def basic(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}train/{c}/{i}.jpg": IMG for c in ("cat", "dog") for i in range(5)}


def intake(tmp_path: Path, archive: Path, limits: IntakeLimits | None = None):
    dest = tmp_path / "work" / "data"
    found, members = index_dataset(archive, dest, limits or IntakeLimits())
    return build_splits(dest, found, val_fraction=0.2, seed=0, archive=archive,
                        members=members)


def files_outside(tmp_path: Path, allowed: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and allowed not in p.parents
            and p.suffix != ".zip"]


@pytest.mark.parametrize("prefix", ["", "my_dataset/"])
def test_root_or_one_top_folder(tmp_path, prefix):
    splits = intake(tmp_path, write_zip(tmp_path / "d.zip", basic(prefix)))
    assert splits.class_names == ["cat", "dog"]


@pytest.mark.parametrize("prefix", ["", "my_dataset/"])
def test_images_are_indexed_in_the_zip_and_nothing_is_written(tmp_path, prefix):
    archive = write_zip(tmp_path / "d.zip", basic(prefix) | {f"{prefix}README.md": b"hi"})
    splits = intake(tmp_path, archive)
    assert splits.archive == archive
    root = tmp_path / "work" / "data"
    for path, _ in splits.train + splits.val:  # named inside the dataset folder ...
        rel = path.relative_to(root).as_posix()
        assert splits.members[rel] == prefix + rel  # ... and read from its zip member
    assert len(splits.members) == 10
    assert not (tmp_path / "work").exists()


def test_val_is_held_out_stratified_and_seeded_when_missing(tmp_path):
    archive = write_zip(tmp_path / "d.zip", basic())
    a = intake(tmp_path, archive)
    b = intake(tmp_path, archive)
    assert a.val_held_out and [p.name for p, _ in a.val] == [p.name for p, _ in b.val]
    assert sorted(label for _, label in a.val) == [0, 1]  # one of each class (20% of 5)
    assert len(a.train) == 8 and not set(a.train) & set(a.val)


def test_given_val_and_test_are_used(tmp_path):
    members = basic() | {"val/cat/v.jpg": IMG, "val/dog/v.jpg": IMG, "test/dog/t.jpg": IMG}
    splits = intake(tmp_path, write_zip(tmp_path / "d.zip", members))
    assert not splits.val_held_out
    assert splits.counts() == {"train": 10, "val": 2, "test": 1}
    assert splits.test[0][1] == 1


def test_junk_is_ignored(tmp_path):
    members = basic() | {"__MACOSX/train/cat/._0.jpg": IMG, "train/cat/.DS_Store": b"x",
                         ".hidden/train/x/1.jpg": IMG, "train/.cache/1.jpg": IMG,
                         "README.md": b"hello"}
    splits = intake(tmp_path, write_zip(tmp_path / "d.zip", members))
    assert splits.class_names == ["cat", "dog"]
    assert len(splits.train) + len(splits.val) == 10


@pytest.mark.parametrize("name, words", [
    ("../evil.jpg", "escapes"), ("train/cat/../../../evil.jpg", "escapes"),
    ("/etc/evil.jpg", "absolute"), ("C:/evil.jpg", "absolute"),
])
def test_escaping_and_absolute_members_are_refused(tmp_path, name, words):
    archive = write_zip(tmp_path / "d.zip", basic() | {name: IMG})
    with pytest.raises(DatasetInvalid, match=words) as err:
        intake(tmp_path, archive)
    assert name in str(err.value)
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = write_zip(tmp_path / "d.zip", basic(), links={"train/cat/link.jpg": "/etc/passwd"})
    with pytest.raises(DatasetInvalid, match="symbolic link") as err:
        intake(tmp_path, archive)
    assert "train/cat/link.jpg" in str(err.value)
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


def test_highly_compressed_oversized_member_is_refused(tmp_path):
    bomb = b"\0" * (8 * 1024 * 1024)  # 8 MiB of zeros deflates to a few KiB
    archive = write_zip(tmp_path / "d.zip", basic() | {"train/cat/bomb.jpg": bomb},
                        compression=zipfile.ZIP_DEFLATED)
    assert archive.stat().st_size < 100_000
    with pytest.raises(DatasetInvalid, match="limit of 1048576"):
        intake(tmp_path, archive, IntakeLimits(max_total_bytes=1024 * 1024))


def test_too_many_members_is_refused(tmp_path):
    archive = write_zip(tmp_path / "d.zip", basic())
    with pytest.raises(DatasetInvalid, match="10 members, more than the limit of 5"):
        intake(tmp_path, archive, IntakeLimits(max_members=5))


def test_not_a_zip(tmp_path):
    path = tmp_path / "d.zip"
    path.write_bytes(b"%PDF-1.7 definitely not a zip")
    with pytest.raises(DatasetInvalid, match="not a readable zip"):
        intake(tmp_path, path)


@pytest.mark.parametrize("members", [
    {"val/cat/1.jpg": IMG, "val/dog/1.jpg": IMG},
    {"a/train/cat/1.jpg": IMG, "b/train/dog/1.jpg": IMG},
    {"images/cat/1.jpg": IMG},
])
def test_no_train_folder(tmp_path, members):
    with pytest.raises(DatasetInvalid, match="no train/"):
        intake(tmp_path, write_zip(tmp_path / "d.zip", members))


def test_single_class_is_refused(tmp_path):
    members = {f"train/cat/{i}.jpg": IMG for i in range(5)}
    with pytest.raises(DatasetInvalid, match=r"at least two class.*cat"):
        intake(tmp_path, write_zip(tmp_path / "d.zip", members))


def test_val_class_missing_from_train_is_refused(tmp_path):
    members = basic() | {"val/cow/1.jpg": IMG}
    with pytest.raises(DatasetInvalid, match="val/ names classes that train/ lacks: cow"):
        intake(tmp_path, write_zip(tmp_path / "d.zip", members))


def test_refusal_writes_nothing_outside_the_work_folder(tmp_path):
    archive = write_zip(tmp_path / "d.zip", basic() | {"train/../../x.jpg": IMG})
    with pytest.raises(DatasetInvalid):
        intake(tmp_path, archive)
    assert files_outside(tmp_path, tmp_path / "work") == []


def zip_bomb(path: Path, name: str = "train/cat/bomb.jpg", size: int = 256 * 1024**2) -> Path:
    """basic() plus one member of `size` zeros, deflated (about 1000:1), written in chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in basic().items():
            zf.writestr(member, data)
        with zf.open(name, "w", force_zip64=True) as out:
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                out.write(zeros)
    return path


def test_a_zip_bomb_is_refused_from_the_central_directory_before_anything_is_written(tmp_path):
    archive = zip_bomb(tmp_path / "bomb.zip")  # 256 MiB of zeros in well under 1 MB
    assert archive.stat().st_size < 1024**2
    dest = tmp_path / "work" / "data"
    t0 = time.monotonic()
    with pytest.raises(DatasetInvalid) as err:
        index_dataset(archive, dest)
    assert time.monotonic() - t0 < 5  # it used to inflate all of it first
    message = str(err.value)
    assert "train/cat/bomb.jpg" in message and "zip bomb" in message
    assert re.search(r"ratio 0\.00\d+, below the minimum of 0\.01", message), message
    assert not dest.exists()  # nothing written, not even the folder


def test_small_members_that_compress_well_are_not_bombs(tmp_path):
    # under 100 KiB inflated, a member is not ratio-checked (as Apache POI's grace size)
    members = basic() | {"train/cat/blank.jpg": b"\0" * (64 * 1024)}
    archive = write_zip(tmp_path / "d.zip", members, compression=zipfile.ZIP_DEFLATED)
    splits = intake(tmp_path, archive)
    assert len(splits.train) + len(splits.val) == 11


@pytest.mark.parametrize("name, code", [
    ("ca\nt", "U+000A"), ("\x1b[31mred", "U+001B"), ("dog\x7f", "U+007F"),
    ("\u202egod", "U+202E"),  # a right-to-left override: shows as 'dog' reversed
])
def test_class_names_with_control_characters_are_refused(tmp_path, name, code):
    members = basic() | {f"train/{name}/1.jpg": IMG}
    dest = tmp_path / "work" / "data"
    with pytest.raises(DatasetInvalid, match=f"class name .* contains the control character "
                                             f"{re.escape(code)}") as err:
        index_dataset(write_zip(tmp_path / "d.zip", members), dest)
    assert repr(name) in str(err.value) and name not in str(err.value)  # shown escaped
    assert not dest.exists()


def test_duplicate_member_names_are_refused(tmp_path):
    path = tmp_path / "d.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_zip(path, basic())
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("train/cat/0.jpg", b"\xff\xd8 another image under the same name")
    dest = tmp_path / "work" / "data"
    with pytest.raises(DatasetInvalid, match=r"archive member 'train/cat/0.jpg' appears 2 times"):
        index_dataset(path, dest)
    assert not dest.exists()
