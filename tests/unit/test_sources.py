"""Images read in place from the dataset's zip (sources.py): the bytes as zipfile gives them,
never more than a member declares, and a corrupt member named as an unreadable image."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training_agent.adapters.trainers.data import load_split
from training_agent.adapters.trainers.sources import Member, read, release, source_of
from training_agent.domain.archive import open_dataset


def jpeg(seed: int, side: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def dataset(path: Path, prefix: str = "top/") -> dict[str, bytes]:
    """Stored and deflated members, inside one top folder."""
    members = {f"{prefix}train/{c}/{i}.jpg": jpeg(10 * k + i)
               for k, c in enumerate(("cat", "dog")) for i in range(4)}
    with zipfile.ZipFile(path, "w") as zf:
        for k, (name, data) in enumerate(members.items()):
            zf.writestr(name, data, zipfile.ZIP_DEFLATED if k % 2 else zipfile.ZIP_STORED)
    return members


def test_members_read_in_place_are_the_zips_bytes(tmp_path):
    members = dataset(tmp_path / "d.zip")
    splits = open_dataset(tmp_path / "d.zip", tmp_path / "data", 0.25, 0)
    locate = source_of(splits)
    for path, _ in splits.train + splits.val:
        src = locate(path)
        assert isinstance(src, Member) and src.path == path
        assert read(src) == members["top/" + path.relative_to(tmp_path / "data").as_posix()]
    assert not (tmp_path / "data").exists()  # nothing extracted
    release(splits.archive)


def test_a_forked_process_reads_through_its_own_map(tmp_path):
    members = dataset(tmp_path / "d.zip")
    splits = open_dataset(tmp_path / "d.zip", tmp_path / "data", 0.25, 0)
    src = source_of(splits)(splits.train[0][0])
    first = read(src)  # this process's map exists before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, b"ok" if read(src) == first else b"no")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 2) == b"ok" and first in members.values()
    release(splits.archive)


def lying_zip(path: Path) -> str:
    """A deflated member of 64 KiB of zeros whose directory says it is 10 bytes."""
    name = "train/cat/big.jpg"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, b"\0" * 65536)
        zf.writestr("train/dog/0.jpg", jpeg(1))
    raw = bytearray(path.read_bytes())
    cd = raw.rfind(b"PK\x01\x02", 0, raw.rfind(name.encode()) + 1)
    raw[cd + 24:cd + 28] = (10).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(raw))
    return name


def test_a_member_is_never_inflated_past_its_declared_size(tmp_path):
    name = lying_zip(tmp_path / "d.zip")
    src = Member(str(tmp_path / "d.zip"), name, tmp_path / "data" / name)
    with pytest.raises(zipfile.BadZipFile, match="big.jpg.*size and CRC"):
        read(src)
    release(tmp_path / "d.zip")


def test_a_corrupt_member_is_an_unreadable_image_named_by_its_class_and_file(tmp_path):
    dataset(tmp_path / "d.zip", prefix="")
    raw = bytearray((tmp_path / "d.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "d.zip") as zf:
        info = zf.getinfo("train/cat/0.jpg")  # stored: its bytes are in the zip as they are
    at = info.header_offset + 30 + len(info.filename) + 200
    raw[at:at + 8] = b"\0" * 8
    (tmp_path / "d.zip").write_bytes(bytes(raw))
    splits = open_dataset(tmp_path / "d.zip", tmp_path / "data", 0.0, 0)
    items = splits.train + splits.val  # all eight
    split = load_split(items, 16, 1, cache=True, workers=0, locate=source_of(splits))
    assert len(split) == 7
    [skipped] = split.skipped
    assert skipped.startswith("cat/0.jpg: BadZipFile:") and str(tmp_path) not in skipped
    streamed = load_split(items, 16, 1, cache=False, workers=0,
                          locate=source_of(splits))
    assert len(streamed) == 7 and streamed.skipped == [skipped]
    release(splits.archive)


def test_an_encrypted_member_is_refused_by_name(tmp_path):
    dataset(tmp_path / "d.zip", prefix="")
    raw = bytearray((tmp_path / "d.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "d.zip") as zf:
        info = zf.getinfo("train/dog/1.jpg")
    cd = raw.rfind(b"PK\x01\x02", 0, raw.rfind(b"train/dog/1.jpg") + 1)
    raw[cd + 8] |= 0x1  # the directory's general-purpose flag: encrypted
    (tmp_path / "d.zip").write_bytes(bytes(raw))
    src = Member(str(tmp_path / "d.zip"), info.filename, tmp_path / "x")
    with pytest.raises(zipfile.BadZipFile, match="'train/dog/1.jpg' is encrypted"):
        read(src)
    release(tmp_path / "d.zip")


def test_a_zip_gone_from_under_a_run_is_named_without_the_servers_path(tmp_path):
    from training_agent.adapters.trainers.images import unreadable

    src = Member(str(tmp_path / "gone.zip"), "train/cat/0.jpg",
                 tmp_path / "data" / "train" / "cat" / "0.jpg")
    with pytest.raises(OSError) as err:
        read(src)
    said = unreadable(src, err.value)
    assert said == ("cat/0.jpg: OSError: the dataset's zip cannot be read: No such file or "
                    "directory")
    assert str(tmp_path) not in said


def test_a_dataset_on_disk_is_read_from_its_files(tmp_path):
    from training_agent.domain.ports import DatasetSplits

    (tmp_path / "a.jpg").write_bytes(jpeg(3))
    splits = DatasetSplits(root=tmp_path, class_names=["a", "b"],
                           train=[(tmp_path / "a.jpg", 0)], val=[])
    src = source_of(splits)(tmp_path / "a.jpg")
    assert src == tmp_path / "a.jpg" and read(src) == jpeg(3)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89PNG\r\n\x1a\nxxxx"],
                         ids=["empty", "text", "cut-short-png"])
def test_bytes_pil_cannot_identify_are_said_without_a_memory_address(tmp_path, content):
    from training_agent.adapters.trainers.images import load_image, unreadable

    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:  # a member: PIL reads its bytes
        zf.writestr("train/cat/notes.jpg", content)
    member = Member(str(tmp_path / "d.zip"), "train/cat/notes.jpg",
                    tmp_path / "data" / "train" / "cat" / "notes.jpg")
    on_disk = tmp_path / "train" / "cat" / "notes.jpg"  # a file: PIL names its path
    on_disk.parent.mkdir(parents=True)
    on_disk.write_bytes(content)
    for src, named in ((member, ""), (on_disk, " 'cat/notes.jpg'")):
        with pytest.raises(Exception) as err:
            load_image(src, 16)
        assert unreadable(src, err.value) == (
            f"cat/notes.jpg: UnidentifiedImageError: cannot identify image file{named} (not an "
            "image format PIL reads, or not a whole image)")
    release(tmp_path / "d.zip")
