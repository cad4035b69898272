"""The model artifacts (docs/trainer.md, "Manifest"): weights (.pth and .safetensors), plots, and the manifest
that names every other artifact with its sha256 and size."""

from __future__ import annotations

import json
import logging
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from training_agent.domain.service import sha256_of as sha256_file

_LIBRARIES = ("torch", "torchvision", "timm", "safetensors", "pillow", "numpy", "training-agent")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def write_weights(state: dict[str, torch.Tensor], out_dir: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    # plain contiguous CPU tensors with no shared storage: both formats load anywhere
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    pth, st = out_dir / "model.pth", out_dir / "model.safetensors"
    torch.save(plain, pth)
    save_file(plain, str(st))
    return {"model.pth": pth, "model.safetensors": st}


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, without its first-run INFO line ("generated new
    fontManager") among the job's output: that is matplotlib's business, not the user's."""
    logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(history: list[dict[str, Any]]) -> Any:
    """Loss, and validation accuracy beside training accuracy (the epoch's batches as
    augmented: the gap is the overfitting), by epoch; whole-number epoch ticks only."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    if any(h.get("val_loss") is not None for h in history):
        ax1.plot(epochs, [h.get("val_loss") for h in history], marker="o", label="val loss")
    ax1.set_xlabel("epoch")
    ax1.set_title("loss")
    ax1.legend()
    if any(h.get("train_accuracy") is not None for h in history):  # coloured as the losses
        ax2.plot(epochs, [h.get("train_accuracy") for h in history], marker="o",
                 label="train accuracy")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="val accuracy",
             color="C1")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("accuracy")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def write_plots(history: list[dict[str, Any]], cm: list[list[int]], class_names: list[str],
                cm_title: str, out_dir: Path) -> dict[str, Path]:
    plt = pyplot()
    fig = curves_figure(history)
    curves = out_dir / "training_curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(cm_title)
    top = max((max(r) for r in cm), default=0)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i][j]), ha="center", va="center",
                        color="white" if cm[i][j] > top / 2 else "black")
    fig.tight_layout()
    matrix = out_dir / "confusion_matrix.png"
    fig.savefig(matrix, dpi=100)
    plt.close(fig)
    return {"training_curves.png": curves, "confusion_matrix.png": matrix}


def write_manifest(body: dict[str, Any], artifacts: dict[str, Path], out_dir: Path) -> Path:
    body = dict(body)
    body["artifacts"] = {name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                         for name, p in sorted(artifacts.items())}
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path
