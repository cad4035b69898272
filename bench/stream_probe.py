"""Where the streamed path's time goes on a GPU (issue 10, item 4): one command that trains
bare steps of ResNet-18 (batch 512 at 224 px, bf16, channels_last, fused AdamW, no per-step
sync, as the job's loop) while something else runs beside it, and reports both rates.

The streamed job reached 0.46 of the compute limit, close to 1 / (1/nvJPEG + 1/step): as if
decoding and training took turns. They could take turns on the GPU's cores (the resize, the
colour conversion), on its JPEG engines, or on Python's lock (per-image Python in the
decoding thread: reading, the header, the tensor per image). Beside the training it runs, one
at a time: nothing; the decoding thread's Python work alone (no GPU); nvJPEG alone (no
resize); nvJPEG + resize (what the streamed path does); PIL over decoding processes with the
copy to the GPU; and nvJPEG and PIL together (each half of every batch). Each background also
runs without training, for its own rate.

    python bench/stream_probe.py [--images 4096] [--steps 40] [--out results/stream_probe.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from trainer_bench import _photo, bare_step  # noqa: E402

from training_agent.adapters.trainers.decoding import JpegDecoder, PilDecoder, jpeg_header  # noqa: E402
from training_agent.adapters.trainers.pytorch import cpu_count  # noqa: E402

SIZE = 224


def photos(n: int) -> list[bytes]:
    with ProcessPoolExecutor(cpu_count(), mp_context=multiprocessing.get_context("fork")) as p:
        return list(p.map(_photo, [(i % 10, i, 1) for i in range(n)], chunksize=64))


def trainer(device: torch.device, batch: int) -> Callable[[int], float]:
    """steps(n) -> img/s of n bare training steps (trainer_bench.bare_step: bf16 and
    channels_last on CUDA), queued without a wait between them, as the job's loop does."""
    cuda = device.type == "cuda"
    step = bare_step("resnet18", 10, SIZE, batch, device, "bf16" if cuda else "fp32")

    def steps(n: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if cuda:
            torch.cuda.synchronize()
        return n * batch / (time.perf_counter() - t0)

    steps(3)
    return steps


def backgrounds(device: torch.device, blobs: list[bytes], batch: int, workers: int
                ) -> dict[str, Callable[[list[bytes]], int]]:
    """name -> work(one batch of encoded images) -> images done; each waits for its device
    work before it returns."""
    cuda = device.type == "cuda"
    sides = {"": torch.cuda.Stream(device) if cuda else None,
             "high": torch.cuda.Stream(device, priority=-1) if cuda else None}
    pil = PilDecoder(SIZE, workers)
    jpeg = JpegDecoder(SIZE, device, PilDecoder(SIZE, 1), batch=256, keep_on_device=True)

    def on_side(fn: Callable[[], int], priority: str = "") -> int:
        side = sides[priority]
        if side is None:
            return fn()
        with torch.cuda.stream(side):
            n = fn()
        side.synchronize()
        return n

    def python_prep(part: list[bytes]) -> int:
        for d in part:
            jpeg_header(d)
            torch.frombuffer(bytearray(d), dtype=torch.uint8)
        return len(part)

    def nvjpeg_only(part: list[bytes], priority: str = "") -> int:
        from torchvision.io import ImageReadMode, decode_jpeg

        def run() -> int:
            ts = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in part]
            return len(decode_jpeg(ts, mode=ImageReadMode.RGB, device=device))
        return on_side(run, priority)

    def nvjpeg_resize(part: list[bytes], priority: str = "") -> int:
        return on_side(lambda: len(jpeg.decode(part).ok), priority)

    def pil_to_device(part: list[bytes]) -> int:
        decoded = pil.decode(part)
        host = decoded.images.pin_memory() if cuda else decoded.images
        return on_side(lambda: len(host.to(device, non_blocking=True)))

    def halves(part: list[bytes]) -> int:
        half = len(part) // 2
        t = threading.Thread(target=pil_to_device, args=(part[:half],))
        t.start()
        n = nvjpeg_resize(part[half:])
        t.join()
        return n + half

    return {"python prep only (header, tensor per image; no GPU)": python_prep,
            "nvJPEG, no resize": nvjpeg_only,
            "nvJPEG + resize (the streamed path's work)": nvjpeg_resize,
            "nvJPEG, no resize, high-priority stream": lambda p: nvjpeg_only(p, "high"),
            "nvJPEG + resize, high-priority stream": lambda p: nvjpeg_resize(p, "high"),
            f"PIL over {workers} processes + copy to the device": pil_to_device,
            f"half nvJPEG + resize, half PIL over {workers} processes": halves}


def run_beside(work: Callable[[list[bytes]], int] | None, blobs: list[bytes], batch: int,
               steps: Callable[[int], float] | None, n_steps: int, seconds: float
               ) -> dict[str, float]:
    """The background `work` looping over `blobs` in batches while `steps` trains (or alone
    for `seconds`): the rates of both."""
    stop = threading.Event()
    done = [0]

    def loop() -> None:
        k = 0
        while not stop.is_set():
            part = blobs[(k * batch) % len(blobs):][:batch]
            k += 1
            done[0] += work(part)  # type: ignore[misc]

    out: dict[str, float] = {}
    t = threading.Thread(target=loop) if work is not None else None
    if t is not None:
        work(blobs[:batch])  # warm
        t.start()
        time.sleep(0.2)
    d0, t0 = done[0], time.perf_counter()
    if steps is not None:
        out["train_img_s"] = steps(n_steps)
    else:
        time.sleep(seconds)
    if t is not None:
        out["decode_img_s"] = (done[0] - d0) / (time.perf_counter() - t0)
        stop.set()
        t.join()
    return out


def engine_use(seconds: int = 2) -> str:
    """nvidia-smi's per-engine use (sm, mem, enc, dec, jpg, ofa) while the caller works."""
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi absent"
    run = subprocess.run(["nvidia-smi", "dmon", "-s", "u", "-c", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 20)
    return (run.stdout or run.stderr).strip()


def while_busy(work: Callable[[list[bytes]], int], part: list[bytes]) -> str:
    """The engines' use while `work` loops over `part`."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            work(part)
    b = threading.Thread(target=busy)
    b.start()
    try:
        return engine_use()
    finally:
        stop.set()
        b.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=max(1, cpu_count() - 1),
                    help="decoding processes for the PIL rows")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "stream_probe.json")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workers = args.workers
    blobs = photos(args.images)
    steps = trainer(device, args.batch)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda"
                               else "cpu", "cores": os.cpu_count(), "batch": args.batch,
                               "image": "320x240 JPEG -> 224", "rows": {}}
    results["rows"]["training alone"] = run_beside(None, blobs, args.batch, steps,
                                                   args.steps, 0)
    print(json.dumps(results["rows"]["training alone"]), flush=True)
    for name, work in backgrounds(device, blobs, args.batch, workers).items():
        alone = run_beside(work, blobs, args.batch, None, 0, 3.0)
        if name.startswith("nvJPEG + resize") and device.type == "cuda":
            results["engine_use_nvjpeg"] = while_busy(work, blobs[:args.batch])
            print(results["engine_use_nvjpeg"], flush=True)
        beside = run_beside(work, blobs, args.batch, steps, args.steps, 0)
        results["rows"][name] = {"alone_decode_img_s": alone["decode_img_s"], **beside}
        print(name, json.dumps(results["rows"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
