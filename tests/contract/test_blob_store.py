"""One contract for every BlobStore: memory, local folder, GCS (emulator), S3 (moto server).
The cloud stores also meet a 403, a transient 503, a corrupted answer and a download larger
than the memory the process may grow by, all over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_agent.domain.errors import BlobNotFound, StorageError, StoragePermissionDenied

from .conftest import BUCKET, BlobCase

MiB = 1024 * 1024


def write(path: Path, size: int) -> Path:
    """`size` random (incompressible) bytes, written 1 MiB at a time."""
    with path.open("wb") as f:
        for done in range(0, size, MiB):
            f.write(os.urandom(min(MiB, size - done)))
    return path


def test_round_trip(blob_case: BlobCase, tmp_path: Path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    url = blob_case.url("models/p/j/model.pth")
    assert blob_case.store.upload(src, url) == url
    dest = tmp_path / "deep" / "down" / "model.pth"
    assert blob_case.store.download(url, dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()


def test_empty_blob(blob_case: BlobCase, tmp_path: Path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    url = blob_case.url("empty")
    blob_case.store.upload(src, url)
    assert blob_case.store.download(url, tmp_path / "got") == 0
    assert (tmp_path / "got").read_bytes() == b""


def test_overwrite_and_multipart_round_trip(blob_case: BlobCase, tmp_path: Path):
    url = blob_case.url("dataset.zip")
    blob_case.store.upload(write(tmp_path / "small", 1000), url)
    big = write(tmp_path / "big", 12 * MiB + 123)  # several parts / resumable chunks
    blob_case.store.upload(big, url)
    dest = tmp_path / "got"
    dest.write_bytes(b"stale")
    assert blob_case.store.download(url, dest) == big.stat().st_size
    assert dest.read_bytes() == big.read_bytes()


def test_missing_blob_is_not_found(blob_case: BlobCase, tmp_path: Path):
    dest = tmp_path / "never"
    with pytest.raises(BlobNotFound):
        blob_case.store.download(blob_case.url("no/such/blob.zip"), dest)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_upload_of_a_missing_file(blob_case: BlobCase, tmp_path: Path):
    with pytest.raises(StorageError):
        blob_case.store.upload(tmp_path / "nothing", blob_case.url("x"))


def test_https_storage_googleapis_url_reaches_the_same_object(request, tmp_path: Path,
                                                               monkeypatch):
    from .conftest import _blob_case

    case = _blob_case("gcs", request, tmp_path, monkeypatch)
    src = tmp_path / "src"
    src.write_bytes(b"zip bytes")
    key = case.url("my data/set.zip").removeprefix(f"gs://{BUCKET}/")
    case.store.upload(src, f"gs://{BUCKET}/{key}")
    https = f"https://storage.googleapis.com/{BUCKET}/{key.replace(' ', '%20')}"
    assert case.store.download(https, tmp_path / "got") == len(b"zip bytes")
    signed = f"https://storage.googleapis.com/{BUCKET}/nope.zip?X-Goog-Signature=SECRET"
    with pytest.raises(BlobNotFound) as caught:
        case.store.download(signed, tmp_path / "nope")
    assert "SECRET" not in str(caught.value) and "nope.zip" in str(caught.value)


def test_size_looks_a_blob_up_without_reading_it(blob_case: BlobCase, tmp_path: Path):
    url = blob_case.url("datasets/d.zip")
    with pytest.raises(BlobNotFound, match="d.zip"):
        blob_case.store.size(url)
    blob_case.store.upload(write(tmp_path / "src", 1234), url)
    assert blob_case.store.size(url) == 1234


def test_delete_removes_a_blob_and_a_missing_one_is_no_error(blob_case: BlobCase,
                                                            tmp_path: Path):
    url = blob_case.url("datasets/d.zip")
    blob_case.store.upload(write(tmp_path / "src", 10), url)
    blob_case.store.delete(url)
    with pytest.raises(BlobNotFound):
        blob_case.store.download(url, tmp_path / "got")
    blob_case.store.delete(url)  # already gone


def test_a_denied_lookup_is_permission_denied(cloud_case: BlobCase):
    fault(cloud_case, "denied", times=None)
    with pytest.raises(StoragePermissionDenied, match="x.zip"):
        cloud_case.store.size(cloud_case.url("x.zip"))


# ---- cloud stores: failures over real HTTP ----------------------------------------------------
def fault(case: BlobCase, which: str, **when: object) -> None:
    status, body, content_type = getattr(case, which)
    assert case.proxy is not None
    case.proxy.fail(status, body, content_type, **when)


def test_permission_denied_download(cloud_case: BlobCase, tmp_path: Path):
    src = tmp_path / "src"
    src.write_bytes(b"data")
    url = cloud_case.url("secret.zip")
    cloud_case.store.upload(src, url)
    assert cloud_case.proxy is not None
    before = len(cloud_case.proxy.seen)
    fault(cloud_case, "denied", times=None)
    with pytest.raises(StoragePermissionDenied, match="secret.zip"):
        cloud_case.store.download(url, tmp_path / "got")
    assert not (tmp_path / "got").exists()
    assert len(cloud_case.proxy.seen) == before + 1  # refused once, never retried


def test_permission_denied_upload(cloud_case: BlobCase, tmp_path: Path):
    src = tmp_path / "src"
    src.write_bytes(b"data")
    fault(cloud_case, "denied", times=None)
    with pytest.raises(StoragePermissionDenied, match="model.pth"):
        cloud_case.store.upload(src, cloud_case.url("model.pth"))


@pytest.mark.parametrize("size", [1000, 7 * MiB])
def test_transient_503_then_success(cloud_case: BlobCase, tmp_path: Path, size: int):
    src = write(tmp_path / "src", size)
    url = cloud_case.url("flaky.bin")
    fault(cloud_case, "unavailable", method="PUT" if cloud_case.name == "s3" else "POST")
    cloud_case.store.upload(src, url)
    fault(cloud_case, "unavailable", method="GET")
    assert cloud_case.store.download(url, tmp_path / "got") == size
    assert (tmp_path / "got").read_bytes() == src.read_bytes()
    statuses = [s for _, _, s in cloud_case.proxy.seen]  # type: ignore[union-attr]
    assert statuses.count(503) == 2 and statuses[-1] in (200, 206)


def test_persistent_503_becomes_a_storage_error(cloud_case: BlobCase, tmp_path: Path):
    src = tmp_path / "src"
    src.write_bytes(b"data")
    url = cloud_case.url("down.bin")
    cloud_case.store.upload(src, url)
    fault(cloud_case, "unavailable", times=None)
    with pytest.raises(StorageError) as caught:
        cloud_case.store.download(url, tmp_path / "got")
    assert not isinstance(caught.value, (BlobNotFound, StoragePermissionDenied))
    assert sum(s == 503 for _, _, s in cloud_case.proxy.seen) >= 2  # type: ignore[union-attr]


def test_corrupted_download_is_refused(cloud_case: BlobCase, tmp_path: Path):
    src = write(tmp_path / "src", 100_000)
    url = cloud_case.url("model.pth")
    cloud_case.store.upload(src, url)
    assert cloud_case.proxy is not None
    cloud_case.proxy.fail(200, corrupt=True, method="GET", times=None,
                          path=r"alt=media" if cloud_case.name == "gcs" else r"model\.pth$")
    dest = tmp_path / "got"
    with pytest.raises(StorageError, match="mismatch|[Cc]hecksum|corrupt"):
        cloud_case.store.download(url, dest)
    assert not dest.exists()


# A fresh interpreter downloads the file, so the servers (threads of this process) do not count.
DOWNLOAD_AND_MEASURE = """
import json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.contract.conftest import gcs_store, s3_store

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

store = (gcs_store if {kind!r} == "gcs" else s3_store)({endpoint!r})
work = Path({work!r})
store.download({warm!r}, work / "warm")  # imports, connections, thread pools: the baseline
base, peak, done = rss(), [0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)

sampler = threading.Thread(target=sample)
sampler.start()
size = {action}
done.set()
sampler.join()
print(json.dumps({{"size": size, "growth": max(peak[0], rss()) - base}}))
"""


def test_large_download_streams_with_bounded_memory(cloud_case: BlobCase, tmp_path: Path):
    size, allowed = 96 * MiB, 40 * MiB  # S3 holds about part_size x concurrency (~30 MiB)
    big = write(tmp_path / "big", size)
    url, warm = cloud_case.url("big.zip"), cloud_case.url("warm.zip")
    cloud_case.store.upload(big, url)
    cloud_case.store.upload(write(tmp_path / "warm", 2 * MiB), warm)
    work = tmp_path / "child"
    work.mkdir()
    assert cloud_case.proxy is not None
    script = DOWNLOAD_AND_MEASURE.format(
        tests=str(Path(__file__).parents[2]), kind=cloud_case.name,
        endpoint=cloud_case.proxy.url, work=str(work), warm=warm,
        action=f"store.download({url!r}, work / 'big')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["size"] == size
    assert (work / "big").stat().st_size == size
    assert result["growth"] < allowed, result
    print(f"{cloud_case.name}: downloaded {size // MiB} MiB, RSS grew at most "
          f"{result['growth'] / MiB:.1f} MiB")


# ---- health: the store's ping reaches the bucket ----------------------------------------------
def test_ping_with_the_store_url_reaches_its_bucket(blob_case: BlobCase):
    blob_case.store.ping(blob_case.prefix)  # the bucket (or folder) is there: quiet
    blob_case.store.ping(blob_case.prefix + "/")


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_ping_of_a_missing_bucket_names_it(request, tmp_path: Path, monkeypatch, scheme):
    from .conftest import _blob_case

    case = _blob_case("gcs" if scheme == "gs" else "s3", request, tmp_path, monkeypatch)
    with pytest.raises(StorageError, match=f"bucket {scheme}://no-such-bucket-4711 does not "
                                           "exist"):
        case.store.ping(f"{scheme}://no-such-bucket-4711/models")
    with pytest.raises(StorageError, match="no-such-bucket-4711"):
        case.store.ping(f"{scheme}://no-such-bucket-4711")


def test_ping_of_a_denied_bucket_is_permission_denied(cloud_case: BlobCase):
    fault(cloud_case, "denied", times=None)
    with pytest.raises(StoragePermissionDenied):
        cloud_case.store.ping(cloud_case.prefix)


def test_ping_of_a_local_store_whose_folder_is_a_file(tmp_path: Path):
    from training_agent.adapters.blobstore.local import LocalBlobStore

    (tmp_path / "taken").write_text("a file")
    LocalBlobStore().ping((tmp_path / "new" / "store").as_uri())  # created on first upload
    with pytest.raises(StorageError, match="not a writable folder"):
        LocalBlobStore().ping((tmp_path / "taken" / "store").as_uri())
