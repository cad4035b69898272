"""A PostgreSQL server of one's own, on a free loopback port, to start and stop at will: the
database outage tests and `bench/faults.py` stop it under a running agent. Needs the server
binaries (/usr/lib/postgresql/*/bin, or pg_ctl on PATH); as root the server runs as the
`postgres` user, which refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PgServer:
    """initdb into a temporary folder; start() and stop() at will; dsn for clients."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise PgUnavailable("no PostgreSQL server binaries (pg_ctl) on this machine")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ta-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = free_port()
        # the server refuses to run as root: run it as the postgres user then
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                  "-E", "UTF8")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True,
                       capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections. A start right after a
        stop has failed once in ~700 test runs on a loaded 2-core machine (pg_ctl exited 1
        with the server in fact coming up): it is checked and tried again before failing,
        and a failure carries the server's log."""
        for attempt in range(3):
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                          "60", "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 "
                                      f"-c unix_socket_directories={self.root} -c fsync=off",
                          "start")
                return
            except subprocess.CalledProcessError as exc:
                if self.running():
                    return
                if attempt == 2:
                    log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() \
                        else ""
                    raise RuntimeError(f"pg_ctl start failed ({exc.returncode}): "
                                       f"{exc.stdout}{exc.stderr}\nserver log:\n{log}") from exc
                time.sleep(1.0)

    def running(self) -> bool:
        """Whether the server runs (pg_ctl status)."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
            return True
        except subprocess.CalledProcessError:
            return False

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, as when a database goes away."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """A started server, removed (stopped, its folder deleted) on the way out."""
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()
