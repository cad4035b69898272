"""What the end of a job costs on this machine: `timings.evaluate_seconds` (the handed-back
weights on validation and test) and `analysis_seconds` (report.json's result analysis), for
a small job at 224 px (ResNet-18 from scratch, 4 classes x 20 / 25 / 25 generated images, one
epoch), run twice. The analysis reuses the evaluation's predictions of validation and test;
its own forward pass is the training images' (for the label check, skipped for a `chance` or
`weak` model).

    .venv/bin/python bench/eval_cost.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.archive import open_dataset
from training_agent.domain.config import TrainingConfig
from training_agent.domain.ports import TrainRequest
from training_agent.testing.datasets import make_dataset_zip


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="eval-cost-"))
    zip_path = make_dataset_zip(tmp / "d.zip", classes=4, size=224, seed=3,
                                per_class={"train": 20, "val": 25, "test": 25})
    splits = open_dataset(zip_path, tmp / "data", 0.0, 42)
    for k in range(2):
        req = TrainRequest(
            job_id=f"j{k}", project_id="p", project_name="p",
            config=TrainingConfig(pretrained=False, epochs=1, image_size=224, device="cpu"),
            splits=splits, work_dir=tmp / f"w{k}", checkpoint_dir=tmp / f"c{k}",
            out_dir=tmp / f"o{k}", dataset_url="file:///d.zip", dataset_sha256="0" * 64)
        result = PyTorchTrainer(threads=2).train(req, lambda p: None)
        t = json.loads(result.artifacts["manifest.json"].read_text())["timings"]
        parts = json.loads(result.artifacts["report.json"].read_text())["seconds_by_part"]
        print(f"run {k + 1}: evaluate {t['evaluate_seconds']:.2f} s, analysis "
              f"{t['analysis_seconds']:.2f} s (its predict {parts['predict']:.2f} s), sum "
              f"{t['evaluate_seconds'] + t['analysis_seconds']:.2f} s; verdict "
              f"{result.metrics['verdict']['level']}")


if __name__ == "__main__":
    main()
