"""The batched decode (decoding.py, decode_pool.py): PIL over decoding processes writing into
shared memory, and the decode_jpeg path (nvJPEG on CUDA; here its CPU run) with its fallback
and its stated tolerance against the reference preprocessing."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training_agent.adapters.trainers.decode_pool import DecodePool
from training_agent.adapters.trainers.decoding import (
    MEAN_TOLERANCE,
    P99_TOLERANCE,
    JpegDecoder,
    PilDecoder,
    draft_scale,
    jpeg_header,
    make_decoder,
)
from training_agent.adapters.trainers.images import decode_many, load_image
from training_agent.testing.datasets import draw_sample


def photo(width: int, height: int, seed: int, fmt: str = "JPEG", mode: str = "RGB",
          exif_orientation: int | None = None) -> bytes:
    """A textured, photo-like image (shapes, blotches and per-pixel grain: harder for the
    comparison than real photos, whose fine detail is smoother)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(draw_sample(seed % 5, max(width, height), random.Random(seed))
                      .resize((width, height)), dtype=np.float32)
    blotch = rng.normal(128, 25, (height // 4 + 1, width // 4 + 1, 3)).clip(0, 255)
    blotch = np.asarray(Image.fromarray(blotch.astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC), dtype=np.float32) - 128
    grain = rng.normal(0, 10, (height, width, 3))
    img = Image.fromarray(np.clip(base + blotch + grain, 0, 255).astype(np.uint8))
    if mode != "RGB":
        img = img.convert(mode)
    out = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(out, fmt, quality=85, exif=exif.tobytes())
    else:
        img.save(out, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


def files(folder: Path, n: int, width: int = 120, height: int = 90) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.jpg"
        path.write_bytes(photo(width, height, i))
        paths.append(path)
    return paths


def test_process_decode_is_the_reference_preprocessing_in_order_with_errors_named(tmp_path):
    paths = files(tmp_path / "cls", 70)
    (tmp_path / "cls" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    paths.insert(5, tmp_path / "cls" / "broken.jpg")
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    array, ok, bad = decode_many(paths, 48, threads=2)
    assert ok == [i for i in range(len(paths)) if i != 5]
    assert len(bad) == 1 and bad[0].startswith("cls/broken.jpg: ")
    assert str(tmp_path) not in bad[0]  # named inside its split, never by the server's path
    expected = np.stack([load_image(paths[i], 48).transpose(2, 0, 1) for i in ok])
    assert array.shape == (70, 3, 48, 48) and np.array_equal(array, expected)
    if before:  # the shared memory file is gone once the decode returns
        assert not [f for f in set(os.listdir("/dev/shm")) - before
                    if f.startswith("training-agent-decode-")]


def test_decoding_runs_in_other_processes_not_under_the_callers_gil(tmp_path):
    """The regression: the thread pool did every image's Python work in the calling process,
    under its one GIL (2 threads ~1.2x one, 16 threads ~3.7x). Now the caller only waits:
    its own CPU time is a small share of the decode's."""
    paths = files(tmp_path / "cls", 128, 320, 240)
    with DecodePool(2) as pool:
        decode_many(paths[:64], 64, 2, pool)  # the processes have started and imported PIL
        cpu, wall = time.process_time(), time.perf_counter()
        array, ok, _ = decode_many(paths, 64, 2, pool)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu_in_process = time.process_time()
    decode_many(paths, 64, 1)
    cpu_in_process = time.process_time() - cpu_in_process
    assert len(ok) == 128
    assert cpu < 0.25 * cpu_in_process, (cpu, cpu_in_process, wall)


def test_decoding_processes_do_not_import_torch():
    """They start in a fraction of a second: only numpy and PIL."""
    code = ("import sys; import training_agent.adapters.trainers.decode_pool, "
            "training_agent.adapters.trainers.images; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_bytes_decode_like_files(tmp_path):
    paths = files(tmp_path / "c", 3)
    data = [p.read_bytes() for p in paths] + [b"not an image"]
    decoded = PilDecoder(40, 1).decode(data)
    assert decoded.ok == [0, 1, 2] and decoded.errors[0].startswith("bytes: ")
    assert torch.equal(decoded.images[1], torch.from_numpy(load_image(paths[1], 40)).permute(2, 0, 1))


@pytest.mark.parametrize(("width", "height", "size"), [
    (640, 480, 224), (640, 480, 128), (320, 240, 224), (1000, 700, 64), (100, 80, 128),
    (224, 224, 64)])
def test_decode_jpeg_path_matches_pil_within_the_stated_tolerance(width, height, size):
    """The equivalence the CUDA path relies on, on its CPU side: torchvision's decode_jpeg at
    full size + box average at the draft scale + antialiased bilinear resize, against
    load_image (JPEG draft, PIL bilinear), per image."""
    data = [photo(width, height, seed) for seed in range(4)]
    ref = PilDecoder(size, 1).decode(data)
    got = JpegDecoder(size, torch.device("cpu"), PilDecoder(size, 1)).decode(data)
    assert got.counts == {"libjpeg-turbo": 4}  # all by the decode_jpeg path, none by fallback
    diff = (ref.images.int() - got.images.int()).abs().float().reshape(4, -1)
    assert diff.mean(1).max() <= MEAN_TOLERANCE
    assert diff.quantile(0.99, dim=1).max() <= P99_TOLERANCE


def test_decode_jpeg_path_leaves_what_it_cannot_take_to_pil(tmp_path):
    """PNG, CMYK JPEG and an EXIF-rotated JPEG go to PIL (exactly the reference); grey JPEGs
    stay on the fast path; unreadable files are named, in input order."""
    folder = tmp_path / "c"
    folder.mkdir()
    sources = {
        "rgb.jpg": photo(80, 60, 1), "grey.jpg": photo(80, 60, 2, mode="L"),
        "pic.png": photo(80, 60, 3, fmt="PNG"), "cmyk.jpg": photo(80, 60, 4, mode="CMYK"),
        "turned.jpg": photo(80, 60, 5, exif_orientation=6),
        "cut.jpg": photo(80, 60, 6)[:300], "junk.jpg": b"\xff\xd8\xff\xe0garbage",
    }
    paths = []
    for name, data in sources.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    decoded = JpegDecoder(32, torch.device("cpu"), PilDecoder(32, 1)).decode(paths)
    by_name = {paths[i].name: decoded.images[k] for k, i in enumerate(decoded.ok)}
    for name in ("pic.png", "cmyk.jpg", "turned.jpg"):
        ref = torch.from_numpy(load_image(folder / name, 32)).permute(2, 0, 1)
        assert torch.equal(by_name[name], ref), name
    turned = by_name["turned.jpg"]
    assert turned.shape == (3, 32, 32)
    assert set(by_name) >= {"rgb.jpg", "grey.jpg", "pic.png", "cmyk.jpg", "turned.jpg"}
    assert decoded.counts["libjpeg-turbo"] >= 2 and decoded.counts["pil"] >= 3
    assert "junk.jpg" not in by_name
    assert any(e.startswith("c/junk.jpg: ") for e in decoded.errors)
    assert len(decoded.ok) + len(decoded.errors) == len(paths)


def test_jpeg_header_reads_components_and_orientation():
    assert jpeg_header(photo(40, 30, 1)) == (3, 1)
    assert jpeg_header(photo(40, 30, 1, mode="L")) == (1, 1)
    assert jpeg_header(photo(40, 30, 1, mode="CMYK")) == (4, 1)
    assert jpeg_header(photo(40, 30, 1, exif_orientation=6)) == (3, 6)
    assert jpeg_header(photo(40, 30, 1, fmt="PNG")) is None
    assert jpeg_header(b"\xff\xd8\xff") is None


def test_draft_scale_is_pils():
    for width, height, size in [(640, 480, 224), (1000, 700, 224), (4000, 3000, 224),
                                (100, 80, 224), (640, 480, 64)]:
        img = Image.open(io.BytesIO(photo(width, height, 0)))
        img.draft("RGB", (size, size))
        assert img.size == (-(-width // draft_scale(height, width, size)),
                            -(-height // draft_scale(height, width, size)))


def test_cpu_training_uses_pil_processes():
    decoder = make_decoder(torch.device("cpu"), 32, 2)
    assert isinstance(decoder, PilDecoder) and decoder.describe()["processes"] == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA GPU")
def test_nvjpeg_matches_pil_within_the_stated_tolerance_and_falls_back():
    data = [photo(640, 480, seed) for seed in range(6)] + [photo(80, 60, 9, fmt="PNG")]
    ref = PilDecoder(224, 1).decode(data)
    got = JpegDecoder(224, torch.device("cuda"), PilDecoder(224, 1)).decode(data)
    assert got.counts == {"nvjpeg": 6, "pil": 1} and got.ok == ref.ok
    diff = (ref.images.int() - got.images.int()).abs().float().reshape(len(data), -1)
    assert diff.mean(1).max() <= MEAN_TOLERANCE
    assert diff.quantile(0.99, dim=1).max() <= P99_TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA GPU")
def test_nvjpeg_can_leave_the_cache_in_gpu_memory_with_the_fallback_rows_filled():
    data = [photo(320, 240, seed) for seed in range(5)] + [photo(80, 60, 9, fmt="PNG")]
    host = JpegDecoder(64, torch.device("cuda"), PilDecoder(64, 1)).decode(data)
    kept = JpegDecoder(64, torch.device("cuda"), PilDecoder(64, 1),
                       keep_on_device=True).decode(data)
    assert kept.images.is_cuda and not host.images.is_cuda
    assert kept.counts == host.counts == {"nvjpeg": 5, "pil": 1}
    assert torch.equal(kept.images.cpu(), host.images)


def test_the_batched_path_decodes_batch_by_batch_in_input_order(tmp_path):
    """More images than one device batch, with a non-JPEG and an unreadable file among them:
    every row is the image of its input (the CPU run of the nvJPEG path)."""
    paths = files(tmp_path / "b", 9)
    (tmp_path / "b" / "bad.jpg").write_bytes(b"not an image")
    paths.insert(4, tmp_path / "b" / "bad.jpg")
    png = tmp_path / "b" / "p.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(png)
    paths.insert(7, png)
    got = JpegDecoder(24, torch.device("cpu"), PilDecoder(24, 1), batch=3).decode(paths)
    ref = PilDecoder(24, 1).decode(paths)
    assert got.ok == ref.ok == [i for i in range(len(paths)) if i != 4]
    assert len(got.errors) == 1 and "bad.jpg" in got.errors[0]
    assert got.counts["libjpeg-turbo"] == 9 and got.counts["pil"] == 1
    diff = (got.images.int() - ref.images.int()).abs().float().reshape(len(got.ok), -1)
    assert diff.mean(1).max() <= MEAN_TOLERANCE


def test_without_decoding_processes_the_decode_still_happens_in_process(tmp_path, monkeypatch):
    """A machine where the processes cannot run (or one dies): the same result, decoded in the
    calling process, with a warning saying why."""
    from training_agent.adapters.trainers import decode_pool

    def broken(self, tasks):
        raise decode_pool.DecodeFailed("a decoding process ended unexpectedly (exit code -9)")

    monkeypatch.setattr(decode_pool.DecodePool, "run", broken)
    paths = files(tmp_path / "c", 70)
    with pytest.warns(RuntimeWarning, match="decoding in one process"):
        array, ok, bad = decode_many(paths, 24, threads=2)
    assert ok == list(range(70)) and not bad
    assert np.array_equal(array[3], load_image(paths[3], 24).transpose(2, 0, 1))


def test_decoding_processes_ignore_ctrl_c(tmp_path):
    """Ctrl-C goes to the whole process group: the processes leave it to the caller (no
    tracebacks of theirs on the terminal) and keep serving until their stdin closes."""
    import signal

    paths = files(tmp_path / "c", 70)
    with DecodePool(2) as pool:
        decode_many(paths[:64], 24, 2, pool)  # started, handlers installed
        for proc in pool.procs:
            os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.2)
        assert all(proc.poll() is None for proc in pool.procs)
        _, ok, _ = decode_many(paths, 24, 2, pool)
    assert len(ok) == 70
