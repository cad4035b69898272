"""bench/faults.py cannot rot: its cheapest fault, the zip bomb, runs here through the script
itself (a real `project create`, a real `serve`, real zips), and the results table it writes
says the fault held."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fault_runs_zip_bomb_holds_and_is_tabled(tmp_path):
    out = tmp_path / "faults.md"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--only",
                          "zip_bomb", "--bomb-mib", "64", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Faults, end to end (issue 9, items 2-7)")
    [row] = [line for line in text.splitlines() if line.startswith("| zip bomb")]
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert len(cells) == 6, cells
    fault, ended, recorded, recover, left, held = cells
    assert "one member of 64 MiB" in fault
    assert ended == "create refused (exit 1); job failed at preparing"
    assert "refused as a zip bomb; images do not compress that well" in recorded, recorded
    assert "DatasetInvalid" in recorded and "error rows: 1" in recorded
    assert left.startswith("work folders: 0, store objects: 0, live workers: 0"), left
    assert held == "yes"
