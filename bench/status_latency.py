"""Status-endpoint latency (p50/p99) with no job running vs while a job trains on every core.

Starts `training-agent serve` on a free loopback port with a throwaway TRAINING_AGENT_HOME,
times a bounded number of GET /agents/training/status/{id} calls idle, then again while a
worker process trains, and prints both side by side as a Markdown table, also written to
bench/results/status_latency.md (`--out`). A script, not a test:

    .venv/bin/python bench/status_latency.py [--requests 300] [--image-size 64] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from training_agent.testing.datasets import make_dataset_zip

CLI = [sys.executable, "-m", "training_agent.entrypoints.cli"]
RESULTS = Path(__file__).parent / "results" / "status_latency.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_status(client: httpx.Client, project_id: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(f"/agents/training/status/{project_id}")
        samples.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="status calls per phase")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=150, help="training images per class")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown goes")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="status-bench-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "WARNING"}
        env.pop("MCP_API_KEY", None)
        data = make_dataset_zip(Path(tmp) / "d.zip", classes=3, size=args.image_size,
                                per_class={"train": args.per_class, "val": 20})
        config = {"pretrained": False, "backbone": "resnet18", "epochs": 1000,
                  "image_size": args.image_size, "batch_size": 32}
        created = subprocess.run([*CLI, "project", "create", "--name", "bench", "--dataset",
                                  str(data), "--config", json.dumps(config)],
                                 env=env, capture_output=True, text=True, check=True)
        project_id = created.stdout.strip().splitlines()[-1]

        port = free_port()
        serve = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for _ in range(300):
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                timed_status(client, project_id, 20)  # warm-up
                idle = timed_status(client, project_id, args.requests)

                client.post("/agents/training/start", json={"project_id": project_id})
                deadline = time.monotonic() + 300
                while True:
                    job = client.get(f"/agents/training/status/{project_id}").json()["job"]
                    if job["progress"].get("epoch") or job["state"] in ("failed", "succeeded"):
                        break
                    if time.monotonic() > deadline:
                        sys.exit("the job never started training")
                    time.sleep(0.2)
                if job["state"] != "training":
                    sys.exit(f"the job is {job['state']}: {job['error']}")
                busy = timed_status(client, project_id, args.requests)
                speed = client.get(f"/agents/training/status/{project_id}").json()[
                    "job"]["progress"].get("images_per_second")
                client.post(f"/agents/training/cancel/{project_id}")
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)

    rows = [(f"p{round(q * 100)}", percentile(idle, q), percentile(busy, q))
            for q in (0.50, 0.90, 0.99)]
    rows += [("mean", statistics.fmean(idle), statistics.fmean(busy)),
             ("max", max(idle), max(busy))]
    text = "\n".join([
        "# Status endpoint latency", "",
        f"`python bench/status_latency.py --requests {args.requests}`: "
        f"GET /agents/training/status/{{id}} on loopback, {args.requests} sequential requests "
        f"per column, {os.cpu_count()} cores, `training-agent serve` on the embedded default "
        f"(SQLite). \"training\": while a worker process trains ResNet-18 on "
        f"{args.image_size} px images with every core (at {speed or 0:.0f} images/s).", "",
        "| latency (ms) | no job | training |", "|---|---:|---:|",
        *[f"| {label} | {a:.2f} | {b:.2f} |" for label, a, b in rows], ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
