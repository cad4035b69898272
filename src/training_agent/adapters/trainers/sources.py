"""Where an image's bytes are: a file on disk, or a member of the dataset's zip, read in place.

A job's dataset is not extracted (intake indexes the zip: `DatasetSplits.archive` and
`members`); each image keeps its path inside the dataset folder (`root/<split>/<class>/<file>`),
which names it in messages and reports, and `source_of(splits)` turns that path into a `Member`
whose bytes `read` takes from the zip. Extracting 22,000 small JPEGs cost 12 s on a GPU machine
(one file created per image); reading them in place costs a slice of a memory map each.

This module imports nothing but the standard library: the decoding processes and the loader's
workers read members too, each through its own map of the zip (`_reader`, one per process)."""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the decoding processes import this module: no pydantic there
    from training_agent.domain.ports import DatasetSplits

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"


class Member(NamedTuple):
    """One image inside the dataset's zip."""

    archive: str  # the zip's path
    name: str  # the member's name in the zip
    path: Path  # the image's path inside the dataset folder: its name in messages


Source = Path | Member


def on_disk(path: Path) -> Source:
    """An image on disk: its path is where its bytes are."""
    return path


def source_of(splits: DatasetSplits) -> Callable[[Path], Source]:
    """path inside the dataset folder -> where its bytes are (the path itself when the
    dataset is on disk)."""
    if splits.archive is None:
        return on_disk
    archive, root, members = str(splits.archive), splits.root, splits.members

    def member(path: Path) -> Source:
        return Member(archive, members[path.relative_to(root).as_posix()], path)

    return member


def path_of(src: Source | str) -> Path:
    """The image's path inside the dataset folder."""
    return src.path if isinstance(src, Member) else Path(src)


def read(src: Source | bytes) -> bytes:
    """The encoded bytes of an image; OSError or zipfile.BadZipFile when unreadable."""
    if isinstance(src, bytes):
        return src
    if isinstance(src, Member):
        try:
            reader = _reader(src.archive)
        except (OSError, zipfile.BadZipFile) as exc:  # named without the server's path
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OSError(f"the dataset's zip cannot be read: {reason}") from None
        return reader.read(src.name)
    return Path(src).read_bytes()


class ZipReader:
    """Members of one zip read through a read-only memory map: a slice, inflated when
    deflated, checked against the central directory's size and CRC. Safe from any number of
    threads (other compressions go through zipfile, one at a time)."""

    def __init__(self, archive: str) -> None:
        self.zip = zipfile.ZipFile(archive)
        self.infos = {info.filename: info for info in self.zip.infolist()}
        self.file = open(archive, "rb")  # noqa: SIM115 - closed by close()
        self.map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ) \
            if os.path.getsize(archive) else None
        self.lock = threading.Lock()

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise FileNotFoundError(f"{name!r} is not in the dataset's zip")
        if info.flag_bits & 0x1:
            raise zipfile.BadZipFile(f"{name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or not self.map:
            with self.lock:
                return self.zip.read(info)
        start = self._data_offset(info)
        raw = self.map[start:start + info.compress_size]
        if len(raw) != info.compress_size:
            raise zipfile.BadZipFile(f"{name!r} is cut short")
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflate = zlib.decompressobj(-15)
            try:  # never more than the declared size (+1 to see a member that lies about it)
                data = inflate.decompress(raw, info.file_size + 1)
            except zlib.error as exc:
                raise zipfile.BadZipFile(f"{name!r} is corrupt: {exc}") from None
        else:
            data = raw
        if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile(f"{name!r} does not match its size and CRC in the zip's "
                                     "directory (corrupt, or not the size it declares)")
        return data

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        assert self.map is not None
        at = info.header_offset
        head = self.map[at:at + _LOCAL_HEADER.size]
        if len(head) != _LOCAL_HEADER.size:
            raise zipfile.BadZipFile(f"{info.filename!r}: its header is past the zip's end")
        fields = _LOCAL_HEADER.unpack(head)
        if fields[0] != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"{info.filename!r}: bad local header")
        return at + _LOCAL_HEADER.size + fields[10] + fields[11]  # name and extra lengths

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        self.file.close()
        self.zip.close()


_readers: dict[tuple[int, str], ZipReader] = {}
_lock = threading.Lock()


def _reader(archive: str) -> ZipReader:
    """This process's reader of `archive` (a forked loader worker opens its own)."""
    key = (os.getpid(), archive)
    reader = _readers.get(key)
    if reader is None:
        with _lock:
            reader = _readers.get(key)
            if reader is None:
                reader = _readers[key] = ZipReader(archive)
    return reader


def release(archive: Path | str | None) -> None:
    """Close this process's map of `archive` (its disk space is freed once the job's folder
    is removed)."""
    if archive is None:
        return
    with _lock:
        reader = _readers.pop((os.getpid(), str(archive)), None)
    if reader is not None:
        reader.close()
