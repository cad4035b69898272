"""The job rules the domain states (models.py) are the ones the SQL migrations spell out: where a
rule lives in a migration's SQL (a partial index, a SQL function), it cannot drift from the
domain without this failing. Where the SQL is built in Python it is generated from the domain."""

from __future__ import annotations

import re

import pytest

from training_agent.adapters.metadata.migrate import migration_files
from training_agent.adapters.metadata.sqlite import _SAVE_SET
from training_agent.domain.models import (
    ACTIVE_STATES,
    JOB_SAVED_FIELDS,
    STARTABLE_IN_ORDER,
    JobState,
    ProjectStatus,
    claim_refusal,
    model_not_recorded,
)

# `state IN ('queued', ...)` (on one line or several), the only way the migrations name states
STATE_LIST = re.compile(r"\bstate\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def _migrations(dialect: str) -> dict[str, str]:
    return {f.name: f.read_text() for f in migration_files(dialect)}


def _state_lists(sql: str) -> list[set[str]]:
    return [set(re.findall(r"'([a-z_]+)'", m)) for m in STATE_LIST.findall(sql)]


@pytest.mark.parametrize("dialect, at_least", [("postgres", 7), ("sqlite", 1)])
def test_every_active_state_list_in_the_migrations_is_the_domains(dialect, at_least):
    active = {s.value for s in ACTIVE_STATES}
    found = [(name, states) for name, sql in _migrations(dialect).items()
             for states in _state_lists(sql)]
    assert len(found) >= at_least  # the pattern still finds them
    for name, states in found:
        assert states == active, f"{name} names the active job states {sorted(states)}"


def _latest_function(name: str) -> str:
    """The body of the last migration's CREATE OR REPLACE of this SQL function: the live one."""
    bodies = [m.group(0) for sql in _migrations("postgres").values() for m in re.finditer(
        rf"CREATE OR REPLACE FUNCTION public\.{name}\(.*?END \$\$;", sql, re.DOTALL)]
    assert bodies, f"no migration defines {name}"
    return bodies[-1]


def test_save_training_job_writes_the_fields_the_domain_says_a_save_writes():
    body = _latest_function("save_training_job")
    assignments = re.search(r"UPDATE training_jobs t\s+SET(.*?)\sWHERE", body, re.DOTALL)
    assert assignments is not None
    columns = re.findall(r"(\w+)\s*=", re.sub(r"\([^()]*\)", "", assignments.group(1)))
    assert sorted(columns) == sorted(JOB_SAVED_FIELDS)


def test_the_sqlite_save_is_generated_from_the_domains_fields():
    assert sorted(re.findall(r"(\w+) = ", _SAVE_SET)) == sorted(JOB_SAVED_FIELDS)
    assert "started_at = COALESCE(:started_at, started_at)" in _SAVE_SET


def test_the_claim_functions_word_their_refusals_as_the_domain_does():
    body = _latest_function("claim_training_job")
    active = claim_refusal("P", ProjectStatus.TRAINING, "J", None)
    assert str(active) == "project P already has an active job J"
    assert "format('project %s already has an active job %s'" in body
    status = claim_refusal("P", ProjectStatus.PENDING_EVALUATION, None, frozenset(
        STARTABLE_IN_ORDER))
    assert str(status) == ("project P is pending_evaluation; a start needs pending_training, "
                           "training_failed or training_cancelled (or force)")
    assert ("format('project %s is %s; a start needs '\n            'pending_training, "
            "training_failed or training_cancelled (or force)'") in body
    recorded = _latest_function("record_trained_model")
    assert str(model_not_recorded("J")) == "job J is no longer active; model not recorded"
    assert "format('job %s is no longer active; model not recorded'" in recorded


def test_the_claim_rule():
    startable = frozenset(STARTABLE_IN_ORDER)
    assert claim_refusal("P", ProjectStatus.TRAINING_FAILED, None, startable) is None
    assert claim_refusal("P", ProjectStatus.PENDING_EVALUATION, None, None) is None  # force
    assert claim_refusal("P", "pending_training", None, startable) is None  # a row's text
    assert "active job" in str(claim_refusal("P", ProjectStatus.PENDING_TRAINING, "J", None))
    assert {s.active for s in JobState} == {True, False}


def test_json_columns_are_the_domain_models_dict_fields():
    """A column added to a model as a dict (optional or not) is stored as JSON by every SQL
    store with no list to update."""
    from typing import Any

    from pydantic import BaseModel

    from training_agent.adapters.metadata.rows import JSON_COLUMNS, json_columns

    assert JSON_COLUMNS == {"training_config", "metadata", "details", "config", "progress"}

    class Row(BaseModel):
        extra: dict[str, Any] | None = None
        plain: dict = {}  # type: ignore[type-arg]
        name: str = ""

    assert json_columns(Row) == {"extra", "plain"}
