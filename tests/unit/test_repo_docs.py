"""Drift guards: the README documents every variable the code reads; .ci/run runs as CI does."""

from __future__ import annotations

import re
from pathlib import Path

from training_agent.entrypoints.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def variables_read_by_the_code() -> set[str]:
    names = {(field.alias or name).upper() for name, field in Settings.model_fields.items()}
    for path in (ROOT / "src" / "training_agent").rglob("*.py"):
        names |= set(re.findall(r"[\"'](TRAINING_AGENT_[A-Z_]+)[\"']", path.read_text()))
    return names


def test_the_readme_configuration_table_names_every_variable():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Architecture")]
    missing = sorted(n for n in variables_read_by_the_code() if f"`{n}`" not in table)
    assert not missing, f"README's configuration table lacks {missing}"


def test_ci_run_sets_ci_so_a_local_run_fails_like_ci_when_postgres_is_missing():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "export CI=1" in lines
    assert lines.index("export CI=1") < next(i for i, line in enumerate(lines)
                                             if line.startswith("scripts/test"))
