"""Fault run (issue 9, items 2-7): each fault performed end to end on real parts, one table.

Every fault gets a throwaway TRAINING_AGENT_HOME and real processes: `training-agent serve` on the
embedded default (SQLite, a local model store), or on a PostgreSQL server of its own on another
port for the outage; real zips; real signals; a real tmpfs for the full disk (needs root). Each
job trains a tiny model (ResNet-18 from scratch, 32 px, 2 classes of a few images, many short
epochs, so that it is still training when the fault strikes).

For each fault the table gives what the job ended as, what was recorded (the job's error, the
error row in agent_logs), the seconds to recover (what is timed is said in the row) and anything
left behind: work folders (`work/jobs/<id>/`), objects in the model store under
`models/<project>/`, and live worker processes of that home (not a live agent's standby worker,
which waits for the next job on purpose). `held` says whether the outcome is
what the issue asks for; the script exits 1 when one is not. A script, not a test (one fault,
the zip bomb, runs in tests/e2e/test_faults_bench.py so that it cannot rot):

    .venv/bin/python bench/faults.py [--only NAME ...] [--bomb-mib 2048] [--out PATH]

NAME is one of: database, disk_full, zip_bomb, serve_kill, mcp_disconnect, mcp_sigterm,
worker_kill.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

from training_agent.domain.archive import IntakeLimits, index_dataset
from training_agent.domain.errors import DatasetInvalid
from training_agent.testing.datasets import make_dataset_zip
from training_agent.testing.pg_server import PgServer, PgUnavailable, free_port
from training_agent.testing.processes import alive

CLI = [sys.executable, "-m", "training_agent.entrypoints.cli"]
RESULTS = Path(__file__).parent / "results" / "faults.md"
TINY = {"pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 8,
        "epochs": 500, "early_stopping_patience": None}  # runs until the fault, never stops early
START = "/agents/training/start"
ACTIVE = {"queued", "downloading", "preparing", "training", "uploading", "recording"}
MiB = 1 << 20


class Skipped(Exception):
    """The fault cannot be performed on this machine (no Postgres binaries, no mount)."""


@dataclass
class Row:
    fault: str
    ended: str = ""
    recorded: str = ""
    recover: str = ""
    left: str = ""
    held: bool = True
    notes: list[str] = field(default_factory=list)

    def expect(self, ok: bool, what: str) -> None:
        """Note an outcome that is not what the issue asks for."""
        if not ok:
            self.held = False
            self.notes.append(what)


def short(text: str | None, limit: int = 150) -> str:
    """One line, at most `limit` characters: the middle elided (causes end with the reason)."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


# ---- an agent home and its processes -------------------------------------------------------
def parent_cmdline(proc: Path) -> bytes:
    """The command line of a /proc entry's parent process; empty when it cannot be read."""
    try:
        parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
        return (Path("/proc") / parent / "cmdline").read_bytes()
    except (OSError, IndexError):
        return b""


class Agent:
    """One TRAINING_AGENT_HOME: the CLI, `serve` processes, its store's rows and leftovers."""

    def __init__(self, root: Path, home: Path | None = None, **env: str) -> None:
        self.root, self.home = root, home or root / "home"
        self.extra = env
        self.dsn = env.get("DATABASE_URL")

    def env(self, **more: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if k not in ("MCP_API_KEY", "NOTIFY_WEBHOOK_URL", "DATABASE_URL", "SUPABASE_URL",
                             "MODEL_STORE_URL", "GCP_BUCKET_NAME", "MAX_CONCURRENT_JOBS")}
        return {**base, "TRAINING_AGENT_HOME": str(self.home), "LOG_LEVEL": "INFO",
                **self.extra, **more}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env(), capture_output=True, text=True,
                              timeout=300)

    def create(self, name: str, dataset: Path, **config: Any) -> str:
        done = self.cli("project", "create", "--name", name, "--dataset", str(dataset),
                        "--config", json.dumps(TINY | config))
        if done.returncode != 0:
            raise RuntimeError(f"project create failed: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    @contextmanager
    def serving(self, port: int | None = None, **env: str) -> Iterator[Serve]:
        served = Serve(self, port or free_port(), **env)
        try:
            yield served
        finally:
            served.stop()

    # the store's rows
    def rows(self, sql: str, *args: object, patience: float = 60) -> list[dict[str, Any]]:
        if self.dsn:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.dsn, connect_timeout=5, row_factory=dict_row) as conn:
                return conn.execute(sql.replace("?", "%s"), args).fetchall()
        db = self.home / "training-agent.sqlite3"
        if not db.exists():
            return []
        deadline = time.monotonic() + patience
        while True:
            conn = sqlite3.connect(db, timeout=30)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(sql, args).fetchall()]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # nothing was ever written
                    return []
                # this reader's own 'disk I/O error' while the disk is full: read again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            finally:
                conn.close()

    def job(self, job_id: str, patience: float = 60) -> dict[str, Any]:
        [row] = self.rows("SELECT state, error, worker_id FROM training_jobs WHERE id = ?",
                          job_id, patience=patience)
        return row

    def worker_pid(self, job_id: str) -> int | None:
        owner = self.job(job_id)["worker_id"] or ""
        return int(owner.rsplit("/pid:", 1)[1]) if "/pid:" in owner else None

    def error_rows(self, project_id: str) -> list[str]:
        return [r["message"] for r in self.rows(
            "SELECT message FROM agent_logs WHERE project_id = ? AND level = 'error' "
            "ORDER BY id", project_id)]

    def wait_job(self, job_id: str, done: Callable[[dict[str, Any]], bool],
                 timeout: float = 180, during: Callable[[], None] | None = None
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state = "unread"
        while True:
            try:  # a reader on a full disk cannot open the database: `during` may free it
                job = self.job(job_id, patience=1)
            except sqlite3.OperationalError:
                job = None
            if job is not None:
                if done(job):
                    return job
                state = job["state"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f} s")
            if during:
                during()
            time.sleep(0.1)

    # what is left behind
    def work_folders(self) -> list[str]:
        jobs = self.home / "work" / "jobs"
        return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []

    def store_objects(self, project_id: str) -> list[str]:
        models = self.home / "store" / "models" / project_id
        return sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file()) \
            if models.is_dir() else []

    def workers_alive(self) -> list[int]:
        """Live worker processes (spawned by an agent) of this home, but a live agent's
        standby worker: loaded and waiting for the next job (docs/architecture.md), it is the
        agent's own, not left behind. It is told apart as a child of a live agent that ran no
        job; once its agent is gone it counts like any other."""
        ran = {int(w.rsplit("/pid:", 1)[1]) for w in (
            r["worker_id"] or "" for r in self.rows("SELECT worker_id FROM training_jobs"))
            if "/pid:" in w}
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline and \
                    f"TRAINING_AGENT_HOME={self.home}\0".encode() in environ + b"\0":
                agent = parent_cmdline(proc)
                standby = int(proc.name) not in ran and any(
                    f"\0{role}\0".encode() in agent for role in ("serve", "watch", "mcp"))
                if not standby:
                    found.append(int(proc.name))
        return found

    def leftovers(self, project_ids: list[str]) -> tuple[str, bool]:
        """What is left behind, and whether nothing is. A worker that has recorded its job's
        end still takes a moment to exit: one alive 10 s later is left behind."""
        deadline = time.monotonic() + 10
        while (workers := self.workers_alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        folders = self.work_folders()
        objects = [f"{p[:8]}/{o}" for p in project_ids for o in self.store_objects(p)]
        parts = [f"work folders: {len(folders)}", f"store objects: {len(objects)}",
                 f"live workers: {len(workers)}"]
        if objects:
            parts[1] += f" ({', '.join(objects[:3])}{'…' if len(objects) > 3 else ''})"
        text = ", ".join(parts)
        kept = sum(du(self.home / "work" / "checkpoints" / p) for p in project_ids)
        if kept:  # on purpose: a start with the same config resumes from it
            text += f" (kept for resume: {kept / MiB:.0f} MiB of checkpoints)"
        return text, not (folders or objects or workers)


class Serve:
    """`training-agent serve` as a real process on a loopback port, with a client."""

    def __init__(self, agent: Agent, port: int, **env: str) -> None:
        self.agent, self.port = agent, port
        self.log_path = agent.root / f"serve-{port}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*CLI, "serve", "--port", str(port)],
                                     env=agent.env(**env), stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_path.read_text()[-2000:]}")
            with suppress(httpx.TransportError):
                if self.api.get("/health").status_code in (200, 503):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("serve did not come up in 120 s")
            time.sleep(0.2)

    def start(self, project_id: str, **config: Any) -> str:
        body: dict[str, Any] = {"project_id": project_id}
        if config:
            body["config"] = config
        r = self.api.post(START, json=body)
        if r.status_code != 202:
            raise RuntimeError(f"start answered {r.status_code}: {r.text}")
        return str(r.json()["job_id"])

    def wait_training(self, job_id: str, timeout: float = 180) -> None:
        """Until the job has reported an epoch: it is training."""
        deadline = time.monotonic() + timeout
        while True:
            [row] = self.agent.rows("SELECT state, progress FROM training_jobs WHERE id = ?",
                                    job_id)
            progress = row["progress"]
            progress = json.loads(progress) if isinstance(progress, str) else progress or {}
            if progress.get("epoch"):
                return
            if row["state"] not in ACTIVE:
                raise RuntimeError(f"job {job_id} ended {row['state']} before training")
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not train within {timeout:.0f} s")
            time.sleep(0.2)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def small_dataset(root: Path, name: str = "d.zip") -> Path:
    return make_dataset_zip(root / name, classes=2, size=32, per_class={"train": 8, "val": 2})


def recorded(agent: Agent, job: dict[str, Any], project_id: str) -> str:
    """The job's error and its error rows (written just after the job's state: waited for)."""
    deadline = time.monotonic() + 5
    while not (errors := agent.error_rows(project_id)) and job["state"] == "failed" and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    text = f"error: {short(job['error'], 120)!r}" if job["error"] else "no error"
    return text + (f"; error rows: {len(errors)} ({short(errors[-1], 90)!r})" if errors
                   else "; error rows: 0")


# ---- the faults ----------------------------------------------------------------------------
def fault_database(root: Path, args: argparse.Namespace) -> Row:
    """(2) Postgres stopped mid-job for a while, then started again."""
    row = Row("database outage mid-job (Postgres stopped ~8 s, restarted)")
    try:
        pg = PgServer()
    except PgUnavailable as exc:
        raise Skipped(str(exc)) from exc
    try:
        pg.start()
        agent = Agent(root, DATABASE_URL=pg.dsn)
        project = agent.create("outage", small_dataset(root))
        with agent.serving() as serve:
            job_id = serve.start(project)
            serve.wait_training(job_id)
            worker = agent.worker_pid(job_id)
            pg.stop()
            t0 = time.monotonic()
            during = serve.api.get(f"/agents/training/status/{project}")
            answer_s = time.monotonic() - t0
            health = serve.api.get("/health")
            time.sleep(max(0.0, 8 - (time.monotonic() - t0)))  # the worker's saves meet it
            pg.start()
            back = time.monotonic()
            while serve.api.get(f"/agents/training/status/{project}").status_code != 200:
                time.sleep(0.1)
            api_s = time.monotonic() - back
            job = agent.wait_job(job_id, lambda j: j["state"] not in ACTIVE, timeout=120)
            recorded_s = time.monotonic() - back
            worker_gone = worker is None or wait_gone(worker, 10)
            row.ended = f"{job['state']} (status during the outage: {during.status_code} " \
                        f"in {answer_s:.2f} s; /health {health.status_code})"
            row.recorded = recorded(agent, job, project)
            row.recover = f"API 200 {api_s:.1f} s after the database's return; failure " \
                          f"recorded {recorded_s:.1f} s after it"
            row.left, clean = agent.leftovers([project])
            row.expect(job["state"] == "failed" and "MetadataError" in (job["error"] or ""),
                       "the job's real cause (MetadataError) is not recorded")
            row.expect("stale" not in (job["error"] or "") and
                       "agent stopped" not in (job["error"] or ""),
                       "failed by a sweep, not with its cause")
            row.expect(during.status_code == 503 and answer_s < 6, "status stalled")
            row.expect(api_s < 10, "the API took over 10 s to recover")
            row.expect(len(agent.error_rows(project)) == 1, "no (or several) error rows")
            row.expect(clean and worker_gone, "something left behind")
    finally:
        pg.remove()
    return row


@contextmanager
def tmpfs(where: Path, mib: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Skipped(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write until the disk is full; returns the bytes written."""
    written = 0
    with suppress(OSError), open(path, "ab") as f:
        while True:
            f.write(b"\0" * MiB)
            f.flush()
            written += MiB
    return written


def fault_disk_full(root: Path, args: argparse.Namespace) -> Row:
    """(3) The agent's home (store, SQLite, work folder) on a small tmpfs that another process
    fills while the job trains; the ballast is removed 15 s later."""
    row = Row("full disk mid-job (home on a 320 MiB tmpfs, filled by another writer)")
    with tmpfs(root / "small-home", 320) as home:
        agent = Agent(root, home=home)
        project = agent.create("full", small_dataset(root))
        with agent.serving() as serve:
            job_id = serve.start(project)
            serve.wait_training(job_id)
            ballast = home / "someone-elses-file.bin"
            filled = fill(ballast)
            t0 = time.monotonic()
            during = serve.api.get(f"/agents/training/status/{project}").status_code
            freed_at: list[float] = []

            def free_after_15s() -> None:
                if not freed_at and time.monotonic() - t0 > 15:
                    ballast.unlink()
                    freed_at.append(time.monotonic() - t0)

            job = agent.wait_job(job_id, lambda j: j["state"] not in ACTIVE, timeout=180,
                                 during=free_after_15s)
            recorded_s = time.monotonic() - t0
            if not freed_at:
                ballast.unlink()
            again = serve.api.post(START, json={"project_id": project})
            if again.status_code == 202:
                serve.api.post(f"/agents/training/cancel/{project}")
            row.ended = (f"{job['state']} (status while full: {during}); a new start once "
                         f"freed: {again.status_code}")
            row.recorded = recorded(agent, job, project)
            row.recover = (f"failure recorded {recorded_s:.1f} s after the disk filled "
                           f"({filled // MiB} MiB of ballast"
                           + (f", removed at {freed_at[0]:.0f} s)" if freed_at
                              else ", still there)"))
            if again.status_code == 202:
                agent.wait_job(again.json()["job_id"], lambda j: j["state"] not in ACTIVE,
                               timeout=60)
            row.left, clean = agent.leftovers([project])
            row.expect(job["state"] == "failed" and
                       "no space left on device" in (job["error"] or ""),
                       "the full disk is not named as the cause")
            row.expect(again.status_code == 202, "the project could not be started again")
            row.expect(len(agent.error_rows(project)) >= 1, "no error row")
            row.expect(clean, "something left behind")
    return row


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes (a multiple of 16 MiB) and its CRC-32, built
    without compressing it all: after a full flush each 16 MiB block compresses the same."""
    chunk = 16 * MiB
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    tail = co.flush(zlib.Z_FINISH)
    crc, zeros = 0, bytes(chunk)
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    return block * (size // chunk) + tail, crc


def make_zip_bomb(path: Path, member_bytes: int, root: Path) -> Path:
    """A valid dataset zip plus one member inflating to `member_bytes` of zeros (ratio ~1000:1),
    written by hand (a STORED copy of each good member, the bomb DEFLATED)."""
    good = small_dataset(root, "good-for-bomb.zip")
    with zipfile.ZipFile(good) as zf:
        members = [(i.filename, zf.read(i), 0, i.CRC, i.file_size) for i in zf.infolist()
                   if not i.is_dir()]
    data, crc = deflated_zeros(member_bytes)
    members.append(("dataset/train/class_a/huge.jpg", data, 8, crc, member_bytes))
    central = []
    with open(path, "wb") as f:
        for name, body, method, crc32, size in members:
            offset, raw = f.tell(), name.encode()
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc32,
                                len(body), size, len(raw), 0) + raw)
            f.write(body)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method,
                                       0, 0x21, crc32, len(body), size, len(raw), 0, 0, 0, 0,
                                       0, offset) + raw)
        table = b"".join(central)
        start = f.tell()
        f.write(table)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                            len(table), start, 0))
    return path


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def fault_zip_bomb(root: Path, args: argparse.Namespace) -> Row:
    """(4) A zip under the size cap holding one member of `--bomb-mib` MiB: refused at create,
    and at training time when the stored object was swapped for the bomb after the create."""
    size = args.bomb_mib * MiB
    bomb = make_zip_bomb(root / "bomb.zip", size, root)
    row = Row(f"zip bomb ({bomb.stat().st_size / MiB:.1f} MB zip, one member of "
              f"{size / MiB:.0f} MiB)")
    agent = Agent(root)
    t_check = time.perf_counter()  # the intake's own check, in process: no interpreter start
    try:
        index_dataset(bomb, root / "inline-intake", IntakeLimits())
        check_s: float | None = None
    except DatasetInvalid:
        check_s = time.perf_counter() - t_check
    inline_written = du(root / "inline-intake")
    t0 = time.monotonic()
    refused = agent.cli("project", "create", "--name", "bomb", "--dataset", str(bomb),
                        "--config", json.dumps(TINY))
    create_s = time.monotonic() - t0
    projects = agent.rows("SELECT id FROM projects")
    stored = du(agent.home / "store")

    # the object in the store replaced by the bomb after a good create: the worker's intake
    project = agent.create("swapped", small_dataset(root))
    [dataset] = agent.rows("SELECT gcs_url FROM datasets WHERE project_id = ?", project)
    copy = Path(unquote(urlparse(dataset["gcs_url"]).path))
    copy.write_bytes(bomb.read_bytes())
    peak = [0]

    def watch_work() -> None:
        peak[0] = max(peak[0], du(agent.home / "work"))

    with agent.serving() as serve:
        t1 = time.monotonic()
        job_id = serve.start(project)
        job = agent.wait_job(job_id, lambda j: j["state"] not in ACTIVE, timeout=120,
                             during=watch_work)
        job_s = time.monotonic() - t1
        message = refused.stderr.strip().splitlines()[-1] if refused.stderr.strip() else ""
        row.ended = (f"create refused (exit {refused.returncode}); job {job['state']} at "
                     "preparing")
        row.recorded = f"create: {short(message, 110)!r}; job " + recorded(agent, job, project)
        row.recover = (f"intake check refused it in {1000 * (check_s or 0):.1f} ms (in "
                       f"process), create in {create_s:.1f} s (CLI wall time, interpreter "
                       f"start included); the job failed {job_s:.1f} s after its start")
        left, clean = agent.leftovers([project])
        row.left = (f"{left}; projects from the refused create: {len(projects)}, store bytes "
                    f"after it: {stored}; work/ peak {peak[0] / MiB:.1f} MiB")
        row.expect(refused.returncode != 0 and "zip bomb" in refused.stderr,
                   "create did not refuse the bomb by name")
        row.expect(not projects and stored == 0 and inline_written == 0,
                   "the refused create (or intake) wrote something")
        row.expect(check_s is not None and check_s < 1, "the intake took over 1 s to refuse")
        row.expect(job["state"] == "failed" and "DatasetInvalid" in (job["error"] or ""),
                   "the job did not fail with DatasetInvalid")
        row.expect(len(agent.error_rows(project)) == 1, "no error row")
        row.expect(peak[0] < 2 * bomb.stat().st_size + MiB, "the bomb was inflated to disk")
        row.expect(create_s < 15 and job_s < 60, "the refusal was slow")
        row.expect(clean, "something left behind")
    return row


def fault_serve_kill(root: Path, args: argparse.Namespace) -> Row:
    """(5) `kill -9` of serve mid-job, a restart on the same port (MAX_CONCURRENT_JOBS=1)."""
    row = Row("kill -9 of serve mid-job, restart (MAX_CONCURRENT_JOBS=1)")
    agent = Agent(root, MAX_CONCURRENT_JOBS="1")
    dataset = small_dataset(root)
    first, second = agent.create("first", dataset), agent.create("second", dataset)
    port = free_port()
    old = Serve(agent, port)
    orphan = None
    try:
        job1 = old.start(first)
        old.wait_training(job1)
        orphan = agent.worker_pid(job1)
        old.kill()
        old.stop()
        time.sleep(1)
        orphan_alive = orphan is not None and alive(orphan)
        t0 = time.monotonic()
        with agent.serving(port) as new:
            restart_s = time.monotonic() - t0
            runner = new.api.get("/health").json()["checks"]["runner"]["detail"]
            job2 = new.start(second)
            time.sleep(4)  # a runner that forgot the orphan would start the second job now
            held = agent.job(job2)["state"] == "queued" and agent.job(job1)["state"] == \
                "training"
            t1 = time.monotonic()
            new.api.post(f"/agents/training/cancel/{first}")
            stopped = orphan is not None and wait_gone(orphan, 30)
            cancel_s = time.monotonic() - t1
            agent.wait_job(job2, lambda j: j["state"] != "queued", timeout=60)
            second_s = time.monotonic() - t1
            new.api.post(f"/agents/training/cancel/{second}")
            agent.wait_job(job2, lambda j: j["state"] not in ACTIVE, timeout=60)
            end1, end2 = agent.job(job1), agent.job(job2)
            time.sleep(1)
            row.ended = (f"first: {end1['state']} (adopted by the new serve, then cancelled); "
                         f"second: queued 4 s while the orphan ran, then {end2['state']}")
            row.recorded = (f"orphan alive after the kill: {orphan_alive}; health after the "
                            f"restart: {runner!r}; second job queued meanwhile: {held}")
            row.recover = (f"restarted serve up (orphan adopted) in {restart_s:.1f} s; the "
                           f"cancel stopped the orphan in {cancel_s:.1f} s; second job began "
                           f"{second_s:.1f} s after the cancel")
            row.left, clean = agent.leftovers([first, second])
            row.expect(orphan_alive and runner.startswith("1 running"),
                       "the restarted serve did not count the orphan")
            row.expect(held, "MAX_CONCURRENT_JOBS broken: the second job ran beside the orphan")
            row.expect(stopped and end1["state"] == "cancelled", "the orphan was not stopped")
            row.expect(clean, "something left behind")
    finally:
        if orphan and alive(orphan):
            os.kill(orphan, signal.SIGKILL)
    return row


def _mcp(root: Path, how: str) -> Row:
    import anyio
    from mcp import Client, StdioServerParameters

    agent = Agent(root)
    project = agent.create(f"mcp-{how}", small_dataset(root))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "training_agent.entrypoints.cli", "mcp"],
        env=agent.env(LOG_LEVEL="WARNING"))
    found: dict[str, Any] = {}

    async def session() -> None:
        async with Client(params) as client:
            started = await client.call_tool("start_training", {"project_id": project})
            job_id = started.structured_content["job_id"]
            found["job_id"] = job_id
            deadline = time.monotonic() + 180
            while not ((await client.call_tool("training_status", {"project_id": project})
                        ).structured_content["job"] or {}).get("progress", {}).get("epoch"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the job did not train within 180 s")
                await anyio.sleep(0.3)
            worker = agent.worker_pid(job_id)
            found["worker"] = worker
            if how == "sigterm" and worker is not None:
                server = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1]
                             .split()[1])
                found["t0"] = time.monotonic()
                os.kill(server, signal.SIGTERM)
                found["server_gone"] = wait_gone(server, 30)
            found.setdefault("t0", time.monotonic())
        # leaving the block is the client going away (stdin closed, then signals)

    anyio.run(session)
    job_id, worker = found["job_id"], found["worker"]
    job = agent.wait_job(job_id, lambda j: j["state"] not in ACTIVE, timeout=60)
    recorded_s = time.monotonic() - found["t0"]
    worker_gone = worker is None or wait_gone(worker, 10)
    row = Row("MCP stdio client disconnects mid-job" if how == "disconnect"
              else "SIGTERM to the `mcp` server mid-job")
    row.ended = job["state"]
    row.recorded = recorded(agent, job, project)
    row.recover = f"job failed (recorded) {recorded_s:.1f} s after the " + (
        "client left" if how == "disconnect" else "signal")
    row.left, clean = agent.leftovers([project])
    row.expect(job["state"] == "failed" and "agent stopped" in (job["error"] or ""),
               "the job was not failed on the server's exit")
    row.expect(len(agent.error_rows(project)) == 1, "no error row")
    row.expect(clean and worker_gone, "something left behind")
    return row


def fault_mcp_disconnect(root: Path, args: argparse.Namespace) -> Row:
    """(6) The MCP client ends its session (closes the server's stdin) mid-job."""
    return _mcp(root, "disconnect")


def fault_mcp_sigterm(root: Path, args: argparse.Namespace) -> Row:
    """(6) SIGTERM to the `mcp` server process mid-job, the client still there."""
    return _mcp(root, "sigterm")


def fault_worker_kill(root: Path, args: argparse.Namespace) -> Row:
    """(7) The training worker killed with SIGKILL (as the OOM killer does)."""
    row = Row("worker SIGKILLed mid-job (as by the OOM killer)")
    agent = Agent(root)
    project = agent.create("oom", small_dataset(root))
    with agent.serving() as serve:
        job_id = serve.start(project)
        serve.wait_training(job_id)
        worker = agent.worker_pid(job_id)
        work = agent.home / "work" / "jobs" / job_id
        existed = work.is_dir()  # the job's folder (the dataset is read in place from its zip)
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        t0 = time.monotonic()
        job = agent.wait_job(job_id, lambda j: j["state"] not in ACTIVE, timeout=60)
        failed_s = time.monotonic() - t0
        while work.exists() and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        removed_s = time.monotonic() - t0
        row.ended = job["state"]
        row.recorded = recorded(agent, job, project)
        row.recover = (f"job failed {failed_s:.1f} s after the kill; its work folder "
                       f"removed {removed_s:.1f} s after it")
        row.left, clean = agent.leftovers([project])
        row.expect(job["state"] == "failed" and "SIGKILL" in (job["error"] or ""),
                   "the job did not fail naming the signal")
        row.expect(existed and not work.exists(), "the work folder was left")
        row.expect(clean, "something left behind")
    return row


FAULTS: dict[str, Callable[[Path, argparse.Namespace], Row]] = {
    "database": fault_database, "disk_full": fault_disk_full, "zip_bomb": fault_zip_bomb,
    "serve_kill": fault_serve_kill, "mcp_disconnect": fault_mcp_disconnect,
    "mcp_sigterm": fault_mcp_sigterm, "worker_kill": fault_worker_kill,
}


NOTES = """Notes:

- Database: the first status call of the outage waits the store's 5 s for a connection, the
  following ones 1 s (docs/cloud.md); the job fails with its real cause because its progress
  save met the outage while it trained. An outage after the artifacts are uploaded is waited
  out instead (the model recorded once the store returns: tests/unit/test_record_model_retry.py,
  tests/integration/test_record_model_outage.py).
- Full disk: whichever write meets the full disk first names it — the checkpoint's free-space
  check, or SQLite's progress save. The first run of this script found the second case
  recorded as `MetadataError: … disk I/O error` (SQLite cannot recreate its WAL index on a full
  disk); it is now `DiskFull: no space left on device (…)`. While the disk stays full the
  embedded store cannot be read either, so status answers 503 until there is room again.
- Zip bomb: the member is built as 128 identical 16 MiB deflate blocks (a full flush between
  them), so the 2 GiB bomb takes a second to write, not half a minute.
"""


def table(rows: list[Row]) -> str:
    lines = ["| fault | job ended as | recorded | seconds to recover | left behind | held |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        held = "yes" if r.held else "NO: " + "; ".join(r.notes)
        cells = [r.fault, r.ended, r.recorded, r.recover, r.left, held]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(FAULTS), metavar="NAME",
                    help=f"run only these faults ({', '.join(FAULTS)})")
    ap.add_argument("--bomb-mib", type=int, default=2048,
                    help="the zip bomb member's size in MiB, a multiple of 16 (default 2048)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown goes")
    args = ap.parse_args(argv)
    if args.bomb_mib % 16 or args.bomb_mib < 16:
        ap.error("--bomb-mib must be a multiple of 16")
    names = args.only or list(FAULTS)
    rows: list[Row] = []
    t_all = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            try:
                row = FAULTS[name](Path(tmp), args)
            except Skipped as exc:
                row = Row(name, ended=f"skipped: {exc}")
            except Exception as exc:  # the run itself broke: say so in the table
                row = Row(name, ended=f"the run broke: {type(exc).__name__}: {short(str(exc))}",
                          held=False, notes=["the fault run did not finish"])
        print(f"   {time.monotonic() - t0:.0f} s: {'held' if row.held else 'NOT HELD'}",
              flush=True)
        rows.append(row)
    total = time.monotonic() - t_all
    text = table(rows)
    print(text)
    command = "python bench/faults.py" + (f" --only {' '.join(names)}" if args.only else "") \
        + (f" --bomb-mib {args.bomb_mib}" if args.bomb_mib != 2048 else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Faults, end to end (issue 9, items 2-7)\n\n"
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores "
        f"({platform.machine()}, Python {platform.python_version()}), {total:.0f} s in all. "
        "Each fault ran on real parts with a throwaway home: a real `serve` (embedded "
        "SQLite and local store, or a PostgreSQL server of its own on another port for the "
        "outage), real zips, real signals, a real tmpfs. Jobs train ResNet-18 from scratch "
        "on 32 px images, 2 classes of 8 training images, 500 epochs, so they are still "
        "training when the fault strikes. 'left behind' counts work folders "
        "(`work/jobs/<id>/`), model-store objects under `models/<project>/` and live worker "
        "processes of that home (a live agent's standby worker, waiting for the next job on "
        "purpose, is not one), once the fault is over (the last epoch's checkpoint, kept on "
        "purpose so that a new start resumes, is shown apart). 'held': the outcome issue 9 "
        "asks for.\n\n" + text + "\n\n" + NOTES)
    return 0 if all(r.held for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
