"""Per-epoch checkpoints in the project's checkpoint folder, so a restarted job resumes.

A checkpoint carries a fingerprint of the resolved config and the dataset's sha256; a job
resumes from it only when its own fingerprint is the same."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
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


def snapshot(obj: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU: training may go on mutating the live
    tensors while the copy is written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """Writes checkpoints on a thread so the next epoch does not wait for the disk; at most one
    write is in flight, and `wait()` (called before the run ends, however it ends) makes sure
    the last one is on disk."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, folder: Path, payload: dict[str, Any]) -> None:
        self.wait()
        copy = snapshot(payload)

        def write() -> None:
            try:
                save(folder, copy)
            except BaseException as exc:  # surfaced by wait(), on the training thread
                self._error = exc

        self._thread = threading.Thread(target=write, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


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
