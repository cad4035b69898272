"""PyTorchTrainer end to end on a tiny real dataset: artifacts, manifest, reloadable weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from training_agent.adapters.trainers.images import load_image
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.adapters.trainers.registry import default_registry
from training_agent.adapters.trainers.sources import source_of
from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import InvalidConfig

from .conftest import Recorder, make_request

ARTIFACTS = {"model.pth", "model.safetensors", "manifest.json", "training_curves.png",
             "confusion_matrix.png", "dataset_report.json", "report.json", "report.html"}


def predict(manifest: dict, state: dict, paths: list) -> list[int]:
    """Recompute predictions from the artifacts alone, as a model consumer would."""
    model = default_registry().get(manifest["trainer"]).build(
        manifest["backbone"], manifest["num_classes"], pretrained=False,
        image_size=manifest["input"]["image_size"])
    model.load_state_dict(state)
    model.eval()
    size = manifest["input"]["image_size"]
    mean = torch.tensor(manifest["input"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(manifest["input"]["std"]).view(1, 3, 1, 1)
    x = torch.stack([torch.from_numpy(load_image(p, size)).permute(2, 0, 1) for p in paths])
    with torch.no_grad():
        return model((x.float() / 255 - mean) / std).argmax(1).tolist()


def test_trains_and_writes_every_artifact(tmp_path, tiny_splits):
    sink = Recorder()
    req = make_request(tmp_path, tiny_splits)
    result = PyTorchTrainer().train(req, sink)

    assert set(result.artifacts) == ARTIFACTS
    assert all(p.exists() and p.parent == req.out_dir for p in result.artifacts.values())
    assert result.epochs_run == 2
    assert [e.epoch for e in sink.epochs] == [1, 2]
    assert any(e.step is not None for e in sink.events)

    manifest = json.loads((req.out_dir / "manifest.json").read_text())
    assert manifest["trainer"] == "torchvision" and manifest["backbone"] == "resnet18"
    assert manifest["class_names"] == ["class_a", "class_b", "class_c"]
    assert manifest["num_classes"] == 3
    assert manifest["input"]["image_size"] == 32 and manifest["input"]["resize"] == "squash"
    assert manifest["input"]["colour_mode"] == "RGB" and len(manifest["input"]["mean"]) == 3
    m = manifest["metrics"]
    assert m["test_accuracy"] == result.accuracy and "val_accuracy" in m
    assert set(m["per_class"]) == set(manifest["class_names"])
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 12
    assert len(m["history"]) == 2
    assert manifest["dataset"]["counts"] == {"train": 36, "val": 12, "test": 12}
    assert manifest["dataset"]["sha256"] == "0" * 64
    assert manifest["config"]["image_size"] == 32
    assert set(manifest["artifacts"]) == ARTIFACTS - {"manifest.json"}
    assert manifest["artifacts"]["model.pth"]["sha256"] == result.weights_sha256
    assert manifest["library_versions"]["torch"]

    state = torch.load(req.out_dir / "model.pth", weights_only=True)
    st = load_file(str(req.out_dir / "model.safetensors"))
    assert state.keys() == st.keys() and all(torch.equal(state[k], st[k]) for k in state)
    locate = source_of(tiny_splits)  # the images, read from the dataset's zip
    preds = predict(manifest, state, [locate(p) for p, _ in tiny_splits.test])
    labels = [lab for _, lab in tiny_splits.test]
    recomputed = sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels)
    assert recomputed == pytest.approx(result.accuracy)
    assert not (req.checkpoint_dir / "last.pt").exists()  # removed after success


def test_auto_image_size_follows_the_data(tmp_path, tiny_splits):
    req = make_request(tmp_path, tiny_splits, image_size="auto", epochs=1)
    PyTorchTrainer().train(req, Recorder())
    manifest = json.loads((req.out_dir / "manifest.json").read_text())
    assert manifest["input"]["image_size"] == 32  # 32 px images: the median side


def test_unknown_backbone_or_trainer_is_invalid_config():
    trainer = PyTorchTrainer()
    with pytest.raises(InvalidConfig, match="resnet9000"):
        trainer.check_config(TrainingConfig(backbone="resnet9000"))
    with pytest.raises(InvalidConfig, match="installed plugins"):
        trainer.check_config(TrainingConfig(trainer="nope"))
    trainer.check_config(TrainingConfig(trainer="timm", backbone="resnet10t"))
