"""What the README tells a new user about set-up and tests holds (issue 12, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_gives_the_costs_and_the_everyday_test_command():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "about 6 GB" in readme and "CUDA" in readme
    assert "minutes to tens of minutes on 2 cores" in readme
    assert 'scripts/test -m "not slow"' in readme
    assert "`mypy --strict` on the domain" in readme
    assert "[`/schema/openapi.json`]" in readme
    script = (ROOT / "scripts" / "test").read_text()
    assert ".venv/bin/mypy" in script and '"$@"' in script  # what the README says it runs


def test_not_slow_is_a_registered_marker_that_leaves_the_training_tests_out():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(m.startswith("slow:") for m in config["tool"]["pytest"]["ini_options"]["markers"])
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m",
                          "not slow", "--strict-markers", "tests/trainers"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300).stdout
    kept = {line.split("::")[0] for line in out.splitlines() if "::" in line}
    assert kept == {"tests/trainers/test_trainer_registry.py",
                    "tests/trainers/test_trainer_weights.py"}, kept
