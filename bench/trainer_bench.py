"""Trainer benchmark, one command: `python bench/trainer_bench.py` (writes bench/results/trainer.md).

Measures, side by side in one run, on this machine's CPU (and on CUDA when a GPU is present):
  1. loader throughput: our pipeline vs the seed's (torchvision ImageFolder, per-sample
     Resize((224, 224)) + ToTensor, DataLoader batch 32, num_workers=0), same JPEG files, same
     output size, first epoch and steady state;
  2. training efficiency: our end-to-end training images/s divided by the same model's
     training step on tensors already in memory (the compute limit);
  3. the whole job (issue 10): a generated dataset of 320x240 JPEGs trained through
     `training-agent train` with the defaults (`pretrained: false`, ResNet-18 at 224 px,
     5 epochs, `batch_size: auto`), the compute limit measured in the same run at the batch the
     job resolved; decode img/s, the decode's parallel efficiency (N processes vs one), steady
     epoch / limit, whole command / limit, and the job's timings. On CPU at a size that fits a
     small machine in minutes (10 classes x 20 training images); on CUDA the issue's size
     (10 classes x 2,000 / 100 / 100), with the nvJPEG decoder's rate too.
(time to accuracy is bench/quality.py's: its datasets are not told apart by colour.)
`--quick` shrinks every part (a smoke run); `--sections job --devices cuda` runs one part on
one device (bench/gpu_bench.sh, the one command for a GPU machine, does that)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from training_agent.adapters.trainers import loop
from training_agent.adapters.trainers.augment import BatchTransform
from training_agent.adapters.trainers.data import chunks_of, load_split
from training_agent.adapters.trainers.disk_cache import file_tensor
from training_agent.adapters.trainers.pytorch import PyTorchTrainer, cpu_count
from training_agent.adapters.trainers.recipe import make_optimizer, resolved_lr
from training_agent.adapters.trainers.registry import default_registry
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.archive import open_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import DatasetSplits, EpochProgress, TrainRequest
from training_agent.testing.datasets import draw_sample, make_dataset_zip

RESULTS = Path(__file__).parent / "results" / "trainer.md"


def splits_from_zip(zip_path: Path, dest: Path) -> DatasetSplits:
    return open_dataset(zip_path, dest, 0.15, 0)


def photo_folder(root: Path, classes: int, per_class: int, side: int) -> list[tuple[Path, int]]:
    """Camera-like JPEGs (side x side*4/3) in ImageFolder layout."""
    rng = random.Random(0)
    items = []
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = draw_sample(c, side, rng).resize((side * 4 // 3, side))
            path = folder / f"{i:04d}.jpg"
            img.save(path, quality=90)
            items.append((path, c))
    return items


# ---- 1. loader ------------------------------------------------------------------------------
def seed_loader(root: Path, device: torch.device):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])
    ds = datasets.ImageFolder(root=str(root), transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=0)


def timed_pass(batches: Any, device: torch.device, prepare: Any = None) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if prepare is not None:
            x = prepare(x)
        n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n, time.perf_counter() - t0


def bench_loader(work: Path, device: torch.device, quick: bool) -> list[dict[str, Any]]:
    root = work / "photos"
    items = photo_folder(root, 3, 40 if quick else 160, 480)
    threads = torch.get_num_threads()
    rows = []

    loader = seed_loader(root, device)
    seed = [timed_pass(loader, device) for _ in range(2)]
    seed_first, seed_steady = (n / dt for n, dt in seed)
    rows.append({"pipeline": "seed: ImageFolder + Resize(224) + ToTensor, 0 workers",
                 "first": seed_first, "steady": seed_steady})

    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    split = load_split(items, 224, threads, cache=True, workers=0)
    if device.type == "cuda":
        split.to(device)  # as the trainer does when the cache fits in GPU memory
    order = chunks_of(torch.randperm(len(split), generator=gen), 32)
    n, dt = timed_pass(split.batches(order), device)
    first = n / (time.perf_counter() - t0)
    steady = []
    for _ in range(5):
        n, dt = timed_pass(split.batches(chunks_of(torch.randperm(len(split), generator=gen), 32)),
                           device)
        steady.append(n / dt)
    where = "GPU" if device.type == "cuda" else "RAM"
    rows.append({"pipeline": f"ours: decode once (JPEG draft, {threads} decoding processes) -> uint8 cache "
                             f"in {where}",
                 "first": first, "steady": statistics.median(steady)})

    tf = BatchTransform("standard", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), device)
    aug = []
    for _ in range(3):
        g = torch.Generator(device=device).manual_seed(1)
        n, dt = timed_pass(split.batches(chunks_of(torch.randperm(len(split), generator=gen), 32)),
                           device, lambda x, g=g: tf.train(x, g))
        aug.append(n / dt)
    rows.append({"pipeline": f"ours + batched augment & normalise on {device.type}",
                 "first": None, "steady": statistics.median(aug)})

    # over the memory budget: decoded once into the cache file on the scratch disk
    # (disk_cache.py), memory-mapped; later passes read it through the page cache
    t0 = time.perf_counter()
    on_disk = load_split(items, 224, threads, cache=True, workers=0,
                         into=file_tensor(work / "disk-cache.u8", (len(items), 3, 224, 224)))
    if device.type == "cuda":
        on_disk.feed(device)  # as the trainer does: page-locked buffers, a copy thread
    n, dt = timed_pass(on_disk.batches(chunks_of(torch.randperm(len(on_disk), generator=gen),
                                                 32)), device)
    disk_first = n / (time.perf_counter() - t0)
    disk_steady = [timed_pass(on_disk.batches(chunks_of(torch.randperm(len(on_disk),
                                                                       generator=gen), 32)),
                              device) for _ in range(5)]
    rows.append({"pipeline": f"ours over the memory budget: decode once ({threads} decoding "
                             "processes) -> uint8 cache file on the scratch disk, memory-mapped",
                 "first": disk_first,
                 "steady": statistics.median(n / dt for n, dt in disk_steady)})

    workers = max(1, threads - 1)
    streamed = load_split(items, 224, threads, cache=False, workers=workers)
    passes = [timed_pass(streamed.batches(chunks_of(torch.randperm(len(streamed),
                                                                   generator=gen), 32)), device)
              for _ in range(2)]
    rows.append({"pipeline": f"ours streamed (over the memory budget, no disk budget): {workers} "
                             "loader process(es), JPEG draft",
                 "first": passes[0][0] / passes[0][1], "steady": passes[1][0] / passes[1][1]})
    for r in rows:
        r["x_first"] = r["first"] / seed_first if r["first"] else None
        r["x_steady"] = r["steady"] / seed_steady
    return rows


# ---- 2. training efficiency -----------------------------------------------------------------
def request(work: Path, splits: DatasetSplits, name: str, **config: Any) -> TrainRequest:
    return TrainRequest(
        job_id=name, project_id=name, project_name=name, config=TrainingConfig(**config),
        splits=splits, work_dir=work / name, checkpoint_dir=work / name / "ckpt",
        out_dir=work / name / "out", dataset_url="file:///bench.zip", dataset_sha256="0" * 64)


def bare_step(backbone: str, classes: int, size: int, batch: int, device: torch.device,
              precision: str) -> Any:
    """A function running one bare training step of the model with the job's optimizer
    (forward, backward, optimizer step) on tensors already in memory: no data loading, no
    augmentation, no validation; queued on a GPU, not waited for."""
    torch.manual_seed(0)
    config = TrainingConfig(pretrained=False)
    model = default_registry().get("torchvision").build(backbone, classes, False, size).to(device)
    cl = device.type == "cuda"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, config, resolved_lr(config))
    x = torch.randn(batch, 3, size, size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            loss = crit(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def compute_limit(backbone: str, classes: int, size: int, batch: int, device: torch.device,
                  precision: str) -> Any:
    """A function timing one bare training step (`bare_step`), waited for to its end.
    Returns the step's wall seconds."""
    run = bare_step(backbone, classes, size, batch, device, precision)

    def step() -> float:
        t0 = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step()  # warm
    return step


def bench_efficiency(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Ours vs the compute limit, interleaved step by step: after each of our training steps
    (timed from the end of the previous one: batch gather, augmentation, normalisation, the
    step, the scheduler, progress reporting) the progress sink runs one bare step of the same
    model and optimizer on in-memory tensors. Steps that span validation are left out. On a
    machine shared with other work, interleaving exposes both to the same load; the median
    and the best (minimum, as timeit reports) of the per-step times are both given."""
    # 256 images a class: epochs long enough (32 steps) that the per-epoch checkpoint is
    # amortised as in real datasets, rather than 8-step epochs where it dominates
    per = {"train": 32 if quick else 256, "val": 8, "test": 4}
    zip_path = make_dataset_zip(work / "eff.zip", classes=4, per_class=per, size=64, seed=1)
    splits = splits_from_zip(zip_path, work / "eff")
    epochs = 3 if quick else 5
    batch = 32  # the reference batch: `auto` resolves to it on a CPU
    precision = "bf16" if device.type == "cuda" else "fp32"
    size = 64  # image_size auto on 64 px images (checked below)
    bare = compute_limit("resnet18", 4, size, batch, device, precision)
    ours: list[float] = []
    limit: list[float] = []
    last: dict[str, Any] = {}

    def sink(p: EpochProgress) -> None:
        if not p.step:
            return
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if last.get("epoch") == p.epoch and p.step == last["step"] + 1:
            ours.append(now - last["t"])
        limit.append(bare())
        last.update(epoch=p.epoch, step=p.step, t=time.perf_counter())

    # training-epoch throughput: each epoch's training loop (the run's `loop.epoch`: batches,
    # augmentation, steps, scheduler, progress) timed whole, minus the bare steps the sink ran
    # inside it; the one-time decode and the per-epoch validation are outside it. The trainer's
    # on_ready hands over each run: its loop's epoch is wrapped there.
    epoch_rates: list[float] = []
    epoch_totals = [0, 0.0]

    def timed(run: loop.TrainingRun) -> None:
        original_epoch = run.loop.epoch

        def timed_epoch(*args: Any) -> Any:
            bare_before, t = sum(limit), time.perf_counter()
            out = original_epoch(*args)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t - (sum(limit) - bare_before)
            epoch_rates.append(out[2] / seconds)  # (loss, accuracy, images, timed out)
            epoch_totals[0] += out[2]
            epoch_totals[1] += seconds
            return out

        run.loop.epoch = timed_epoch  # type: ignore[method-assign]

    req = request(work, splits, f"eff-{device.type}", pretrained=False, epochs=epochs,
                  early_stopping_patience=None, device=str(device.type))
    t0 = time.perf_counter()
    result = PyTorchTrainer(on_ready=timed).train(req, sink)
    wall = time.perf_counter() - t0 - sum(limit)
    manifest = json.loads(result.artifacts["manifest.json"].read_text())
    assert manifest["input"]["image_size"] == size
    med = statistics.median
    n = len(splits.train)
    return {"device": device.type, "images": n, "epochs": epochs, "image_size": size,
            "batch": batch, "steps": len(ours),
            "limit_med": batch / med(limit), "limit_best": batch / min(limit),
            "ours_med": batch / med(ours), "ours_best": batch / min(ours),
            "eff_med": med(limit) / med(ours), "eff_best": min(limit) / min(ours),
            "epoch_med": med(epoch_rates), "eff_epoch_med": med(epoch_rates) / (batch / med(limit)),
            "epoch_all": epoch_totals[0] / epoch_totals[1],
            "eff_epoch_all": epoch_totals[0] / epoch_totals[1] / (batch / med(limit)),
            "epoch_rates": [round(r, 1) for r in epoch_rates],
            "whole": n * epochs / wall, "eff_whole": (n * epochs / wall) / (batch / med(limit))}


# ---- 3. whole job ---------------------------------------------------------------------------
JOB_SIZES = {  # classes, train / val / test images a class, epochs, image size
    "quick": (4, 8, 2, 2, 2, 64),
    "cpu": (10, 20, 5, 5, 5, 224),
    "cuda": (10, 2000, 100, 100, 5, 224),
}


def _photo(args: tuple[int, int, int]) -> bytes:
    """A 320x240 JPEG: a drawn shape on a background, with photo-like grain."""
    import io

    import numpy as np
    from PIL import Image

    cls, index, seed = args
    img = draw_sample(cls, 240, random.Random(seed * 1_000_003 + index)).resize((320, 240))
    grain = np.random.default_rng(index).normal(0, 6, (240, 320, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=90)
    return out.getvalue()


def job_zip(path: Path, classes: int, per_class: dict[str, int]) -> int:
    """The generated dataset as a zip (stored, as camera JPEGs usually are); returns images."""
    import multiprocessing
    import zipfile
    from concurrent.futures import ProcessPoolExecutor

    names = [(split, c, i) for split, n in per_class.items() for c in range(classes)
             for i in range(n)]
    seeds = {"train": 1, "val": 2, "test": 3}
    with ProcessPoolExecutor(cpu_count(), mp_context=multiprocessing.get_context("fork")) as pool:
        data = pool.map(_photo, [(c, i, seeds[split]) for split, c, i in names], chunksize=64)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for (split, c, i), blob in zip(names, data, strict=True):
                zf.writestr(f"photos/{split}/class_{c}/{i:05d}.jpg", blob)
    return len(names)


def cli(home: Path, *args: str, env_extra: dict[str, str] | None = None) -> tuple[str, float]:
    import subprocess

    env = {**os.environ, "TRAINING_AGENT_HOME": str(home), **(env_extra or {})}
    # what the `training-agent` script runs (a wheel installed with --target has no script)
    command = [sys.executable, "-c", "from training_agent.entrypoints.cli import main; main()"]
    t0 = time.perf_counter()
    out = subprocess.run([*command, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"training-agent {' '.join(args[:1])} failed ({out.returncode}): "
                           f"{out.stderr[-2000:]}")
    return out.stdout, seconds


def decode_efficiency(paths: list[Any], size: int, device: torch.device) -> dict[str, Any]:
    """Decode img/s with one process and with one per core (the same images), and on CUDA
    the nvJPEG decoder's."""
    from training_agent.adapters.trainers.decoding import JpegDecoder, PilDecoder

    n = cpu_count()
    rates, cpu, cores = {}, {}, {}
    reference = None
    for workers in (1, n):
        with PilDecoder(size, workers) as dec:
            dec.decode(paths[: 4 * 64])  # processes started, files in the page cache
            c0, t0 = _decode_cpu(dec), time.perf_counter()
            reference = dec.decode(paths)
            wall, used = time.perf_counter() - t0, _decode_cpu(dec) - c0
            rates[workers] = len(paths) / wall
            cpu[workers] = used / len(paths) * 1000  # CPU ms per image
            cores[workers] = used / wall  # the cores the decode really had
    out: dict[str, Any] = {"workers": n, "one": rates[1], "all": rates[n],
                           "efficiency": rates[n] / (n * rates[1]), "images": len(paths),
                           "cpu_ms_one": cpu[1], "cpu_ms_all": cpu[n], "cores_all": cores[n]}
    if device.type == "cuda":
        with JpegDecoder(size, device, PilDecoder(size, n)) as dec:
            dec.decode(paths[:256])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            decoded = dec.decode(paths)
            out["nvjpeg"] = len(paths) / (time.perf_counter() - t0)
            out["nvjpeg_counts"] = decoded.counts
        with JpegDecoder(size, device, PilDecoder(size, n), keep_on_device=True) as kept:
            kept.decode(paths[:256])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            kept.decode(paths)
            torch.cuda.synchronize()
            out["nvjpeg_kept"] = len(paths) / (time.perf_counter() - t0)
        # the stated tolerance, checked on the GPU's output (decoding.py)
        assert reference is not None and decoded.ok == reference.ok
        diff = (decoded.images.int() - reference.images.int()).abs().float()
        diff = diff.reshape(len(decoded.ok), -1)
        out["nvjpeg_mean_abs_max"] = float(diff.mean(1).max())
        out["nvjpeg_p99_max"] = float(diff[:512].quantile(0.99, dim=1).max())
    return out


def measure_limit(classes: int, size: int, batch: int, device: torch.device,
                  quick: bool) -> float:
    """img/s of bare training steps of ResNet-18 on in-memory tensors (median step)."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    bare = compute_limit("resnet18", classes, size, batch, device, precision)
    for _ in range(3):  # allocator, kernels chosen: the first steps are slower
        bare()
    return batch / statistics.median([bare() for _ in range(6 if quick else 20)])


def _decode_cpu(dec: Any) -> float:
    """CPU seconds used so far by a PilDecoder: its processes', or this process's."""
    pool = getattr(dec, "_pool", None)
    if pool is None:
        return time.process_time()
    ticks = 0
    for proc in pool.procs:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def one_job(home: Path, zip_path: Path, config: dict[str, Any], name: str,
            env_extra: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """`project create` + `train` through the CLI: the job's manifest and the train command's
    wall seconds."""
    out, _ = cli(home, "project", "create", "--name", name, "--dataset", str(zip_path),
                 "--config", json.dumps(config))
    project = out.strip().splitlines()[-1].split()[-1]
    _, command = cli(home, "train", project, "--quiet", env_extra=env_extra)
    [manifest_path] = list((home / "store" / "models" / project).rglob("manifest.json"))
    return json.loads(manifest_path.read_text()), command


def bench_job(work: Path, device: torch.device, quick: bool,
              fixed_batches: tuple[int, ...] = (), streamed: tuple[str, ...] = ()
              ) -> dict[str, Any]:
    """One whole `training-agent train` on a generated dataset with the defaults, and the
    compute limit of the same model at the batch the job resolved, in the same run."""
    classes, train, val, test, epochs, size = JOB_SIZES["quick" if quick else device.type]
    zip_path = work / "photos.zip"
    t0 = time.perf_counter()
    images = job_zip(zip_path, classes, {"train": train, "val": val, "test": test})
    generated = time.perf_counter() - t0
    home = work / "home"
    config = {"pretrained": False, "epochs": epochs, "image_size": size,
              "device": device.type}
    # the limit is measured before and after the job, at the batch `auto` resolves to (32 on
    # a CPU; on CUDA the job's probe decides, so the first measure uses 256), and the better
    # of the two kept: on a shared machine a neighbour's load stretches one of them
    guess = 32 if device.type == "cpu" else 256
    limit_before = measure_limit(classes, size, guess, device, quick)
    m, command = one_job(home, zip_path, config, f"bench-{device.type}")
    batch = int(m["config"]["batch_size"])
    limits = {batch: max(limit_before if batch == guess else 0.0,
                         measure_limit(classes, size, batch, device, quick))}
    limit = limits[batch]
    rates = [h["images_per_second"] for h in m["metrics"]["history"]]
    steady = statistics.median(rates[1:] or rates)
    fixed = []  # the same job at fixed batches: is `auto` within 10 % of the best of them?
    for b in fixed_batches:
        fm, fcommand = one_job(home, zip_path, {**config, "batch_size": b}, f"bench-b{b}")
        if b not in limits:
            limits[b] = measure_limit(classes, size, b, device, quick)
        frates = [h["images_per_second"] for h in fm["metrics"]["history"]]
        fixed.append({"batch": b, "steady": statistics.median(frates[1:] or frates),
                      "epoch_rates": frates, "command_seconds": fcommand, "limit": limits[b],
                      "test_accuracy": fm["metrics"].get("test_accuracy")})
    stream: list[dict[str, Any]] = []  # the same job over the memory budget: "disk", the
    for share in streamed:  # cache on the scratch disk; else streamed (no disk budget) at
        env = {"TRAINING_AGENT_CACHE_GB": "0"}  # each CPU share ("auto": balanced)
        if share != "disk":
            env["TRAINING_AGENT_DISK_CACHE_GB"] = "0"
        if share not in ("auto", "disk"):
            env["TRAINING_AGENT_STREAM_CPU_SHARE"] = share
        try:
            sm, scommand = one_job(home, zip_path, config, f"streamed-{share}", env)
        except RuntimeError as exc:  # the rest of the section still reports
            stream.append({"share": share, "error": str(exc)[-1500:]})
            continue
        srates = [h["images_per_second"] for h in sm["metrics"]["history"]]
        sbatch = int(sm["config"]["batch_size"])
        if sbatch not in limits:
            limits[sbatch] = measure_limit(classes, size, sbatch, device, quick)
        stream.append({"share": share, "batch": sbatch, "decoder": sm["input"]["decoder"],
                       "cache": sm["runtime"].get("cache"),
                       "epoch_rates": srates, "steady": statistics.median(srates[1:] or srates),
                       "limit": limits[sbatch], "command_seconds": scommand,
                       "timings": sm["timings"],
                       "test_accuracy": sm["metrics"].get("test_accuracy")})
    trained = m["dataset"]["counts"]["train"] * len(rates)
    decoded = sum(m["dataset"]["counts"].values())
    t = m["timings"]
    indexed = splits_from_zip(zip_path, work / "indexed")
    locate = source_of(indexed)  # the images read from the zip in place, as the job does
    paths = [locate(p) for split in (indexed.train, indexed.val, indexed.test) for p, _ in split]
    # the decode that held the job up: all of it, or with the overlap (filling.py) the
    # validation and test images decoded first plus what the first epoch waited for
    exposed = (t["decode_val_test_seconds"] + t["decode_wait_seconds"]
               if "decode_wait_seconds" in t else t["decode_seconds"])
    want = 512 if quick else 4000
    eff = decode_efficiency((paths * (want // len(paths) + 1))[:want], size, device)
    return {
        "device": device.type, "zip_mb": zip_path.stat().st_size / 1e6, "images": images,
        "generated_seconds": generated, "classes": classes, "epochs": len(rates),
        "image_size": size, "batch": batch, "lr": m["config"]["lr"],
        "batch_probe": m["runtime"]["batch"]["probe"], "decoder": m["input"]["decoder"],
        "limit": limit, "epoch_rates": rates, "steady": steady, "steady_ratio": steady / limit,
        "command_seconds": command, "whole": trained / command,
        "whole_ratio": trained / command / limit,
        "decode_rate": decoded / max(t["decode_seconds"], 1e-9), "timings": t,
        "decode_exposed": exposed, "outside": command - exposed - t["train_seconds"],
        "efficiency": eff, "fixed": fixed, "test_accuracy": m["metrics"].get("test_accuracy"),
        "verdict": (m["metrics"].get("verdict") or {}).get("level"),
        "streamed": stream,
    }


# ---- report ---------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def report(parts: list[dict[str, Any]], seconds: float) -> str:
    lines = ["# Trainer benchmark", "",
             f"`python bench/trainer_bench.py` on {platform.processor() or platform.machine()}, "
             f"{cpu_count()} CPU cores, torch {torch.__version__}, "
             f"{torch.get_num_threads()} intra-op threads; whole run {seconds:.0f} s"
             + (f"; GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
             + ".", ""]
    for part in parts:
        dev = part["device"]
        lines += [f"## {dev.upper()}", ""]
        if "loader" in part:
            lines += loader_lines(part)
        if "efficiency" in part:
            lines += efficiency_lines(part)
        if "job" in part:
            lines += job_lines(part["job"])
    lines += ["Accuracy and time to accuracy are measured by `bench/quality.py` "
              "(bench/results/quality.md) on generated families whose class is not given by "
              "colour; this benchmark's generated images are told apart by colour, which any "
              f"recipe learns in an epoch. Load average at the end: {os.getloadavg()[0]:.1f} "
              f"on {cpu_count()} cores (a shared machine stretches every figure here).", ""]
    return "\n".join(lines)


def learned(j: dict[str, Any]) -> bool:
    """The verdict is `ok`, and on CUDA (2,000 images a class, told apart by colour) the test
    accuracy at least 0.9; on a CPU's 20 images a class at 224 px 5 epochs from scratch reach
    0.6-0.7, which is learning."""
    return j.get("verdict") == "ok" and (j["device"] != "cuda"
                                         or (j.get("test_accuracy") or 0) >= 0.9)


def job_lines(j: dict[str, Any]) -> list[str]:
    e, t = j["efficiency"], j["timings"]
    timing = ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}" for k, v in t.items())
    rows = [f"### 3. Whole job: `training-agent train`, defaults (ResNet-18 at {j['image_size']} "
            f"px, `pretrained: false`, {j['epochs']} epochs, `batch_size: auto`)", "",
            f"{j['images']:,} generated 320x240 JPEGs ({j['classes']} classes, zip "
            f"{j['zip_mb']:.0f} MB); batch resolved to {j['batch']} (probe: "
            f"{j['batch_probe'] or 'none on a CPU'}), lr {j['lr']:.2g}; cache decoded by "
            f"{j['decoder'].get('name')} ({j['decoder'].get('images')}).", "",
            *([f"**The job did not learn as it should: test accuracy {j['test_accuracy']} "
               f"(verdict {j.get('verdict')}) on images told apart by colour: the figures "
               "below time a run that did not learn.**", ""] if not learned(j) else []),
            "| measure | figure | ÷ limit |", "|---|---:|---:|",
            f"| compute limit: bare steps at batch {j['batch']} on in-memory tensors | "
            f"{_f(j['limit'], 1)} img/s | 1.00 |",
            f"| steady epoch (median of epochs 2+; all: {j['epoch_rates']}) | "
            f"{_f(j['steady'], 1)} img/s | **{j['steady_ratio']:.2f}** |",
            f"| test accuracy (verdict) | {j.get('test_accuracy')} ({j.get('verdict')}) | |",
            f"| whole command ({j['command_seconds']:.1f} s: images trained ÷ its wall time) | "
            f"{_f(j['whole'], 1)} img/s | **{j['whole_ratio']:.2f}** |",
            f"| decode in the job (all splits ÷ decode_seconds) | {_f(j['decode_rate'])} img/s "
            "| |",
            f"| decode that held the job up (overlapped with the set-up and epoch 1: "
            f"{j['decoder'].get('overlapped', False)}) | {j['decode_exposed']:.1f} of "
            f"{t['decode_seconds']:.1f} s | |",
            f"| decode, 1 process ({e['images']} of the dataset's images; CPU "
            f"{e['cpu_ms_one']:.2f} ms an image) | {_f(e['one'])} img/s | |",
            f"| decode, {e['workers']} processes (CPU {e['cpu_ms_all']:.2f} ms an image; they "
            f"had {e['cores_all']:.1f} of {e['workers']} cores) | {_f(e['all'])} img/s | "
            f"parallel efficiency **{e['efficiency']:.2f}** |"]
    if "nvjpeg" in e:
        rows.append(f"| decode, nvJPEG batches + PIL fallback ({e['nvjpeg_counts']}; vs PIL "
                    f"per image: mean |diff| at most {e['nvjpeg_mean_abs_max']:.2f}, p99 at most "
                    f"{e['nvjpeg_p99_max']:.0f} levels; tolerance 2.5 / 12) | "
                    f"{_f(e['nvjpeg'])} img/s | |")
        rows.append("| decode, nvJPEG, output left in GPU memory (as the job does when the "
                    f"cache fits there) | {_f(e.get('nvjpeg_kept'))} img/s | |")
    if j.get("fixed"):
        best = max([j["steady"], *(f["steady"] for f in j["fixed"])])
        rows += ["", "The same job at fixed batches (`auto` should be within 10 % of the best):",
                 "", "| batch | steady epoch img/s | ÷ its limit (img/s) | ÷ best steady | "
                 "whole command s | test acc |", "|---|---:|---:|---:|---:|---:|",
                 f"| auto ({j['batch']}) | {_f(j['steady'])} | {j['steady_ratio']:.2f} "
                 f"({_f(j['limit'])}) | **{j['steady'] / best:.2f}** | "
                 f"{j['command_seconds']:.1f} | {j.get('test_accuracy')} |"]
        rows += [f"| {f['batch']} | {_f(f['steady'])} | {f['steady'] / f['limit']:.2f} "
                 f"({_f(f['limit'])}) | {f['steady'] / best:.2f} | "
                 f"{f['command_seconds']:.1f} | {f.get('test_accuracy')} |" for f in j["fixed"]]
    if j.get("streamed"):
        rows += ["", "The same job over the memory budget (`TRAINING_AGENT_CACHE_GB=0`): "
                 "`disk`, decoded once into the cache file on the scratch disk; otherwise "
                 "streamed (`TRAINING_AGENT_DISK_CACHE_GB=0`: decoded on every pass), by the "
                 "CPU's share of each batch (`TRAINING_AGENT_STREAM_CPU_SHARE`; auto: balanced):",
                 "", "| run | decoder | steady epoch img/s (all epochs) | ÷ limit | whole "
                 "command s | test acc |", "|---|---|---:|---:|---:|---:|"]
        for s in j["streamed"]:
            if "error" in s:
                rows.append(f"| {s['share']} | failed: {s['error'][-300:]!r} | | | | |")
                continue
            d = s["decoder"]
            how = (f"cache on {s.get('cache')}, {d.get('name')}, overlapped "
                   f"{d.get('overlapped')}" if s.get("cache") else
                   f"{d.get('name')}, cpu_share {d.get('cpu_share')}, "
                   f"{d.get('cpu_processes', d.get('loader_processes'))} processes")
            rows.append(f"| {s['share']} | {how} | {_f(s['steady'])} "
                        f"({s['epoch_rates']}) | **{s['steady'] / s['limit']:.2f}** | "
                        f"{s['command_seconds']:.1f} | {s.get('test_accuracy')} |")
    inside = (f" Inside training ({t['train_seconds']:.1f} s), besides its steps "
              f"({t['steps_seconds']:.1f} s): validation {t['validation_seconds']:.1f} s, the "
              f"epochs' ends {t['epoch_end_seconds']:.1f} s." if "steps_seconds" in t else "")
    rows += ["", f"Outside training and the decode that held it up: {j['outside']:.1f} s of "
             f"the command.{inside} The manifest's timings (s): {timing}.", ""]
    return rows


def loader_lines(part: dict[str, Any]) -> list[str]:
    lines = ["### 1. Loader throughput (images/s, 224 px output, "
                  "batch 32, 480x640 JPEGs)", "",
                  "| pipeline | first epoch | steady state | × seed (first) | × seed (steady) |",
                  "|---|---:|---:|---:|---:|"]
    for r in part["loader"]:
        lines.append(f"| {r['pipeline']} | {_f(r['first'])} | {_f(r['steady'])} | "
                     f"{_f(r['x_first'], 1)} | {_f(r['x_steady'], 1)} |")
    return [*lines, ""]


def efficiency_lines(part: dict[str, Any]) -> list[str]:
    e = part["efficiency"]
    return [f"### 2. Training efficiency (ResNet-18, {e['image_size']} px, batch "
                  f"{e['batch']}, {e['images']} images, {e['epochs']} epochs, {e['steps']} "
                  "interleaved step pairs)", "",
                  "| measure | images/s (median step) | ÷ limit | images/s (best step) | ÷ limit |",
                  "|---|---:|---:|---:|---:|",
                  f"| compute limit: same model and optimizer, step on in-memory tensors | "
                  f"{_f(e['limit_med'], 1)} | 1.00 | {_f(e['limit_best'], 1)} | 1.00 |",
                  f"| ours, end to end per training step (gather + augment + step + reporting) | "
                  f"{_f(e['ours_med'], 1)} | **{e['eff_med']:.3f}** | {_f(e['ours_best'], 1)} | "
                  f"**{e['eff_best']:.3f}** |",
                  f"| ours, training-epoch throughput (median epoch; all epochs pooled in the "
                  f"second pair) | {_f(e['epoch_med'], 1)} | **{e['eff_epoch_med']:.3f}** | "
                  f"{_f(e['epoch_all'], 1)} (pooled) | {e['eff_epoch_all']:.3f} |",
                  f"| ours, whole run (decode, validation, checkpoints, artifacts included) | "
                  f"{_f(e['whole'], 1)} | {e['eff_whole']:.3f} | | |",
                  "",
                  "Definitions (every ratio is ÷ the compute limit's median-step images/s, "
                  "except the best-step ratio, ÷ the limit's best step):",
                  "",
                  "- *compute limit*: batch ÷ wall time of one bare step (forward, backward, "
                  "optimizer step) of the same model and optimizer on tensors already in memory; "
                  "median and best of the bare steps run between ours.",
                  "- *per training step*: batch ÷ wall time from the end of one of our steps' "
                  "progress report to the end of the next (batch gather, augmentation, "
                  "normalisation, the step, the scheduler, reporting); steps that span "
                  "validation are left out; median and best step.",
                  "- *training-epoch throughput*: images trained in an epoch ÷ wall time of that "
                  "epoch's training loop (every step of the epoch, with its data handling and "
                  "reporting), the interleaved bare steps subtracted; the one-time decode and "
                  "the per-epoch validation, checkpoint and epoch-end report are outside it. "
                  "Median over the epochs (per epoch: "
                  f"{e['epoch_rates']}), and all epochs pooled (total images ÷ total loop time).",
                  "- *whole run*: images × epochs ÷ wall time of the whole `train()` call "
                  "(decode, every epoch, validation, checkpoints, test, artifacts), the "
                  "interleaved bare steps subtracted.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sections", default="loader,efficiency,job",
                        help="comma-separated: loader, efficiency, job (default: all)")
    parser.add_argument("--devices", default="cpu,cuda",
                        help="comma-separated: cpu, cuda (cuda only where a GPU is present)")
    parser.add_argument("--fixed-batches", default="",
                        help="the whole job again at these fixed batches, e.g. 128,256,512")
    parser.add_argument("--streamed", nargs="?", const="disk,auto", default="",
                        help="the whole job again over the memory budget: 'disk' (the "
                             "cache on the scratch disk), or streamed at these CPU shares of "
                             "each batch, e.g. disk,0,auto (default disk,auto)")
    args = parser.parse_args(argv)
    torch.set_num_threads(cpu_count())
    os.environ.setdefault("TRAINING_AGENT_PLUGINS", "torchvision")
    sections = set(args.sections.split(","))
    wanted = set(args.devices.split(","))
    devices = [torch.device(d) for d in ("cpu", "cuda") if d in wanted
               and (d == "cpu" or torch.cuda.is_available())]
    t0 = time.perf_counter()
    parts = []
    for device in devices:
        with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
            work = Path(tmp)
            part: dict[str, Any] = {"device": device.type}
            if "job" in sections:  # first: its dataset is generated by forked processes
                print(f"[{device}] whole job ...", file=sys.stderr)
                fixed = tuple(int(b) for b in args.fixed_batches.split(",") if b)
                shares = tuple(x for x in args.streamed.split(",") if x)
                part["job"] = bench_job(work, device, args.quick, fixed, shares)
            if "loader" in sections:
                print(f"[{device}] loader ...", file=sys.stderr)
                part["loader"] = bench_loader(work, device, args.quick)
            if "efficiency" in sections:
                print(f"[{device}] training efficiency ...", file=sys.stderr)
                part["efficiency"] = bench_efficiency(work, device, args.quick)
            parts.append(part)
    text = report(parts, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(parts, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
