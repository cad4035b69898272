"""Fixtures shared by every suite: temporary homes and real dataset zips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training_agent.testing.datasets import make_dataset_zip

# A Supabase project named by SUPABASE_URL/SUPABASE_KEY runs the live Supabase test (which only
# touches rows it creates); TEST_SUPABASE_URL/TEST_SUPABASE_KEY, when set, win.
for _name in ("SUPABASE_URL", "SUPABASE_KEY"):
    if os.environ.get(_name):
        os.environ.setdefault(f"TEST_{_name}", os.environ[_name])

# Otherwise tests never touch a developer's real configuration or a cloud account.
for _name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "GCP_BUCKET_NAME",
              "MODEL_STORE_URL", "NOTIFY_WEBHOOK_URL", "MCP_API_KEY"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def trainer_environment_restored():
    """Building a container hands the settings to the trainer adapters for the whole process
    (adapters/trainers/environment.py); each test starts from and leaves what was there."""
    from training_agent.adapters.trainers import environment

    saved = environment.current()
    yield
    environment._current = saved


@pytest.fixture
def dataset_zip(tmp_path: Path) -> Path:
    """3 classes, 32 px, train/val/test inside one top-level folder."""
    return make_dataset_zip(tmp_path / "shapes.zip")
