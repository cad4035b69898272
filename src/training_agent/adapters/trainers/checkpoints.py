"""Per-epoch checkpoints in the project's checkpoint folder, so a restarted job resumes.

A checkpoint carries a fingerprint of the resolved config and the dataset's sha256; a job
resumes from it only when its own fingerprint is the same."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

NAME = "last.pt"


def fingerprint(config: dict[str, Any], dataset_sha256: str, class_names: list[str]) -> str:
    blob = json.dumps({"config": config, "dataset": dataset_sha256, "classes": class_names},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def save(folder: Path, payload: dict[str, Any]) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    folder.mkdir(parents=True, exist_ok=True)
    path, tmp = folder / NAME, folder / (NAME + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(folder: Path) -> dict[str, Any] | None:
    path = folder / NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt checkpoint is no reason to fail: start fresh
        return None


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
