"""What a job pays to start under `serve`, with and without the standby worker.

Starts `training-agent serve` (a throwaway TRAINING_AGENT_HOME, a free loopback port) once with
`TRAINING_AGENT_STANDBY_WORKER=0` (each job spawns a fresh worker process, which imports torch
and the models) and once with the default standby worker (a process spawned ahead of the job,
its libraries loading while nothing waits), lets it settle, then runs `--jobs` small jobs one
at a time, `--gap` seconds apart (a project each, created with the CLI beforehand), each timed
from the POST to its end; then as many posted at once. It reports, per job: the whole job, the manifest's
`trainer_load_wait_seconds` (how long the job waited for torch, torchvision and matplotlib)
and the trainer's own `total_seconds`; the table goes to bench/results/job_start.md (`--out`).

    .venv/bin/python bench/job_start.py [--jobs 3] [--settle 15] [--out PATH]

`--big`: instead, the trainer benchmark's whole job (10 classes x 2,000 / 100 / 100 JPEGs at
320x240, ResNet-18 at 224 px, 5 epochs, defaults), one job on each agent, posted once the
agent has settled: the whole job through a long-running `serve`, for the GPU machine
(bench/gpu_bench.sh), where a fresh process's imports take 7-8 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from training_agent.testing.families import make_family_zip
from training_agent.testing.processes import serving

CLI = [sys.executable, "-m", "training_agent.entrypoints.cli"]
RESULTS = Path(__file__).parent / "results" / "job_start.md"
CONFIG = {"pretrained": False, "epochs": 1, "image_size": 32}
TERMINAL = ("succeeded", "failed", "cancelled")


def env_for(home: Path, standby: bool) -> dict[str, str]:
    drop = ("MCP_API_KEY", "NOTIFY_WEBHOOK_URL", "DATABASE_URL", "SUPABASE_URL",
            "MODEL_STORE_URL", "GCP_BUCKET_NAME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "TRAINING_AGENT_HOME": str(home),
            "TRAINING_AGENT_STANDBY_WORKER": "1" if standby else "0"}


BIG = {"pretrained": False, "epochs": 5, "image_size": 224}
BIG_SPLITS = {"train": 2000, "val": 100, "test": 100}  # a class, 10 classes


def create_projects(home: Path, dataset: Path, n: int, standby: bool, name: str,
                    config: dict[str, Any]) -> list[str]:
    out = []
    for i in range(n):
        run = subprocess.run([*CLI, "project", "create", "--name", f"{name}-{i}", "--dataset",
                              str(dataset), "--config", json.dumps(config)],
                             env=env_for(home, standby), capture_output=True, text=True,
                             check=True)
        out.append(run.stdout.strip().splitlines()[-1].split()[-1])
    return out


def wait_done(client: httpx.Client, project: str) -> float:
    """Poll until `project`'s job ends; the moment it was seen ended."""
    while True:
        view = client.get(f"/agents/training/status/{project}").json()
        if view["job"]["state"] in TERMINAL:
            if view["job"]["state"] != "succeeded":
                raise RuntimeError(f"project {project}: {view['job']}")
            return time.perf_counter()
        time.sleep(0.05)


def timings_of(home: Path, project: str) -> dict[str, Any]:
    [manifest] = (home / "store" / "models" / project).rglob("manifest.json")
    return dict(json.loads(manifest.read_text())["timings"])


def run_jobs(home: Path, dataset: Path, jobs: int, settle: float, gap: float,
             standby: bool, config: dict[str, Any] = CONFIG, queue: bool = True
             ) -> list[dict[str, Any]]:
    """On one agent: `jobs` jobs one after another, each posted `gap` s after the previous
    ended; then (with `queue`) `jobs` more posted at once (queued behind each other)."""
    spaced = create_projects(home, dataset, jobs, standby, "spaced", config)
    queued = create_projects(home, dataset, jobs if queue else 0, standby, "queued", config)
    rows: list[dict[str, Any]] = []

    def row(scenario: str, project: str, whole: float) -> None:
        t = timings_of(home, project)
        rows.append({"scenario": scenario, "job": len([r for r in rows
                                                         if r["scenario"] == scenario]) + 1,
                     "whole_seconds": whole, "load_wait": t.get("trainer_load_wait_seconds"),
                     "trainer_seconds": t.get("total_seconds"), "timings": t})
        print(("standby " if standby else "fresh   ") + json.dumps(rows[-1]), flush=True)

    with serving(env_for(home, standby), home, timeout=120) as client:
        time.sleep(settle)  # the standby worker (when on) loads meanwhile; an idle agent
        for i, project in enumerate(spaced):
            if i:
                time.sleep(gap)
            t0 = time.perf_counter()
            client.post("/agents/training/start", json={"project_id": project}
                        ).raise_for_status()
            row(f"one at a time, {gap:g} s apart", project, wait_done(client, project) - t0)
        if not queued:
            return rows
        time.sleep(settle)
        t0 = time.perf_counter()
        for project in queued:
            client.post("/agents/training/start", json={"project_id": project}
                        ).raise_for_status()
        for project in queued:
            row("posted at once", project, wait_done(client, project) - t0)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=3, help="jobs run one after another")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds the agent idles after it is up, before the first job")
    ap.add_argument("--gap", type=float, default=5.0,
                    help="seconds between one job's end and the next one's start")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--big", action="store_true",
                    help="the trainer benchmark's whole job, once on each agent")
    args = ap.parse_args(argv)
    if args.big:
        return big(args.settle, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dataset = make_family_zip(work / "shapes.zip", "shapes", {"train": 10, "test": 4})
        for name in ("fresh", "standby"):
            (work / name).mkdir()
        fresh = run_jobs(work / "fresh", dataset, args.jobs, args.settle, args.gap, False)
        warm = run_jobs(work / "standby", dataset, args.jobs, args.settle, args.gap, True)
    lines = [
        "# Job start under `serve`: a fresh worker process per job vs the standby worker", "",
        f"`python bench/job_start.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        .replace(" `", "`") + f" — {platform.machine()}, {os.cpu_count()} cores. Each job: "
        f"4 classes x 10 training images, `{json.dumps(CONFIG)}` (a project each), on one "
        f"agent (`MAX_CONCURRENT_JOBS=1`), {args.settle:g} s after it came up: first one at "
        f"a time, each posted {args.gap:g} s after the previous ended, then {args.jobs} "
        "posted at once (queued behind each other). *Whole*: from the job's POST (at once: "
        "the first POST) to its end as the status endpoint shows it; *load wait*: the "
        "manifest's "
        "`trainer_load_wait_seconds`, what the job waited for torch, torchvision and "
        "matplotlib to load; *trainer*: the trainer's `total_seconds`.", "",
        "| scenario | job | whole, fresh process (s) | whole, standby (s) | load wait, fresh "
        "/ standby (s) | trainer, fresh / standby (s) |", "|---|---|---|---|---|---|",
    ]
    for f, w in zip(fresh, warm, strict=True):
        lines.append(f"| {f['scenario']} | {f['job']} | {f['whole_seconds']:.2f} | "
                     f"{w['whole_seconds']:.2f} | {f['load_wait']:.2f} / {w['load_wait']:.2f} | "
                     f"{f['trainer_seconds']:.2f} / {w['trainer_seconds']:.2f} |")
    for scenario in dict.fromkeys(r["scenario"] for r in fresh):
        f_mean = statistics.mean(r["whole_seconds"] for r in fresh if r["scenario"] == scenario)
        w_mean = statistics.mean(r["whole_seconds"] for r in warm if r["scenario"] == scenario)
        lines += ["", f"{scenario}: mean whole job {f_mean:.2f} s with a fresh process each, "
                      f"{w_mean:.2f} s with the standby worker."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


def big(settle: float, out: Path) -> int:
    """The trainer benchmark's whole job through `serve`, fresh process vs standby."""
    sys.path.insert(0, str(Path(__file__).parent))
    from trainer_bench import job_zip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = job_zip(work / "photos.zip", 10, BIG_SPLITS)
        trained = 10 * BIG_SPLITS["train"] * int(BIG["epochs"])  # type: ignore[call-overload]
        rows = {}
        for name in ("fresh", "standby"):
            (work / name).mkdir()
            [rows[name]] = run_jobs(work / name, work / "photos.zip", 1, settle, 0,
                                    name == "standby", BIG, queue=False)
    lines = ["# The whole job through `serve`: a fresh worker process vs the standby worker",
             "", f"`python bench/job_start.py --big --settle {settle:g}` — {platform.machine()}"
             f", {os.cpu_count()} cores. {images:,} generated 320x240 JPEGs (10 classes x "
             f"{BIG_SPLITS}), `{json.dumps(BIG)}`, one job on an agent that had idled "
             f"{settle:g} s; *whole*: from its POST to its end as the status endpoint shows "
             "it. Images trained ÷ whole seconds is the figure to set against the compute "
             "limit that bench/trainer_bench.py measures in the same run.", "",
             "| worker | whole (s) | images trained ÷ whole (img/s) | load wait (s) | "
             "trainer (s) | timings (s) |", "|---|---:|---:|---:|---:|---|"]
    for name, r in rows.items():
        t = {k.removesuffix("_seconds"): round(v, 1) for k, v in r["timings"].items()
             if isinstance(v, (int, float))}
        lines.append(f"| {name} | {r['whole_seconds']:.1f} | {trained / r['whole_seconds']:,.0f}"
                     f" | {r['load_wait']:.1f} | {r['trainer_seconds']:.1f} | {t} |")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
