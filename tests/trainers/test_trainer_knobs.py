"""Every knob of the README's config list does what it says, shown by what the run really used
(its optimizer, loss, transform, decoded cache, forward dtype) and by what the manifest and
history record: trainer, backbone, pretrained, epochs, batch_size, lr, optimizer, weight_decay,
label_smoothing, augment, image_size (int, auto from the data, auto from pretrained weights),
early_stopping_patience, seed, precision, device, max_minutes, plus val_fraction,
warmup_epochs and compile; and the streamed (over-budget) pipeline."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from training_agent.adapters.trainers import environment, loop
from training_agent.adapters.trainers.augment import PRESETS, BatchTransform
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.adapters.trainers.recipe import (
    resolved_augment,
    resolved_label_smoothing,
    resolved_lr,
    resolved_warmup_epochs,
)
from training_agent.domain.config import TrainingConfig
from training_agent.domain.errors import TrainingError
from training_agent.testing.families import make_family_zip

from .conftest import Recorder, make_request, splits_of


class Probe:
    """A trainer whose runs are kept once their model, optimizer, loss and transform exist
    (the trainer's public `on_ready`), with the dtype and autocast state of the first
    convolution's output at every forward pass."""

    def __init__(self) -> None:
        self.runs: list[loop.TrainingRun] = []
        self.forward: set[tuple[torch.dtype, bool]] = set()
        self.trainer = PyTorchTrainer(on_ready=self.ready)

    def ready(self, run: loop.TrainingRun) -> None:
        first = next(m for m in run.learner.model.modules() if isinstance(m, torch.nn.Conv2d))
        first.register_forward_hook(lambda m, i, out: self.forward.add(
            (out.dtype, torch.is_autocast_enabled("cpu"))))
        self.runs.append(run)

    @property
    def run(self) -> loop.TrainingRun:
        [run] = self.runs
        return run


@pytest.fixture
def probe() -> Probe:
    return Probe()


def manifest_of(result) -> dict:
    return json.loads(result.artifacts["manifest.json"].read_text())


def test_sgd_lr_decay_smoothing_no_augment_fixed_size_batch_warmup(tmp_path, tiny_splits, probe):
    result = probe.trainer.train(make_request(
        tmp_path, tiny_splits, epochs=3, optimizer="sgd", lr=0.05, weight_decay=0.01,
        label_smoothing=0.2, augment="none", image_size=40, batch_size=5, warmup_epochs=2,
        early_stopping_patience=None), Recorder())
    run, m = probe.run, manifest_of(result)
    opt = run.learner.optimizer
    assert type(opt) is torch.optim.SGD
    assert [g["initial_lr"] for g in opt.param_groups] == [0.05, 0.05]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # no decay on norms/biases
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    assert run.learner.criterion.label_smoothing == 0.2
    assert run.learner.transform.preset == "none"
    assert m["config"]["lr"] == 0.05 and m["config"]["optimizer"] == "sgd"
    # image_size 40: the decoded cache, the manifest and the model input all use it
    assert run.data["train"].images.shape[-2:] == (40, 40)
    assert m["input"]["image_size"] == m["config"]["image_size"] == 40
    # batch_size 5 on 36 training images: 8 steps an epoch
    assert m["runtime"]["batch_per_rank"] == 5 and m["runtime"]["steps_per_epoch"] == 8
    # warmup over 2 of 3 epochs: the learning rate rises through epoch 2, then falls
    lrs = [h["lr"] for h in result.metrics["history"]]
    assert lrs[0] < lrs[1] <= 0.05 and lrs[2] < lrs[1]
    assert lrs[0] == pytest.approx(0.05 * (0.01 + 0.99 * 8 / 16))


def test_adam_no_decay_no_smoothing_strong_augment_no_warmup(tmp_path, tiny_splits, probe):
    result = probe.trainer.train(make_request(
        tmp_path, tiny_splits, epochs=2, optimizer="adam", lr=0.002, weight_decay=0.0,
        label_smoothing=0.0, augment="strong", warmup_epochs=0), Recorder())
    run = probe.run
    assert type(run.learner.optimizer) is torch.optim.Adam
    assert [g["initial_lr"] for g in run.learner.optimizer.param_groups] == [0.002, 0.002]
    assert [g["weight_decay"] for g in run.learner.optimizer.param_groups] == [0.0, 0.0]
    assert run.learner.criterion.label_smoothing == 0.0
    assert run.learner.transform.preset == "strong"
    # from scratch: held at the full rate, then down to 0 over the last 30 % of the 6 steps
    lrs = [h["lr"] for h in result.metrics["history"]]
    assert lrs[0] == pytest.approx(0.002)
    assert lrs[1] == pytest.approx(0.0, abs=1e-12)


def test_recipe_defaults_follow_how_the_model_starts():
    """Fine-tuning keeps warmup + cosine, smoothing 0.1 and `standard`; from scratch the rate
    is held then cooled linearly, with no smoothing and the `shift` preset."""
    from training_agent.adapters.trainers.recipe import Schedule

    def lr_factors(shape):
        schedule = Schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1),
                            0, 10, shape)
        return [schedule.factor(step) for step in (0, 5, 7, 10)]

    assert lr_factors("cosine") == pytest.approx(
        [1.0, 0.5, 0.5 * (1 + math.cos(math.pi * 0.7)), 0.0])
    assert lr_factors("linear") == pytest.approx([1.0, 1.0, 1.0, 0.0])
    config = TrainingConfig(pretrained=True)
    assert resolved_label_smoothing(config) == 0.1 and resolved_augment(config) == "standard"
    scratch = TrainingConfig(pretrained=False)
    assert resolved_label_smoothing(scratch) == 0.0 and resolved_augment(scratch) == "shift"
    # the rate: 2e-3 from scratch over a 2-epoch warmup, 5e-4 fine-tuning over one
    assert (resolved_lr(scratch), resolved_warmup_epochs(scratch)) == (2e-3, 2.0)
    assert (resolved_lr(config), resolved_warmup_epochs(config)) == (5e-4, 1.0)
    assert resolved_warmup_epochs(TrainingConfig(pretrained=False, warmup_epochs=0.5)) == 0.5


def test_defaults_adamw_light_augment_and_auto_size_from_the_data(tmp_path, tiny_splits, probe):
    """AdamW with the recipe's from-scratch lr; image_size auto without pretrained weights is
    taken from the data (these images are 32 px); precision auto on CPU is fp32."""
    result = probe.trainer.train(make_request(
        tmp_path, tiny_splits, epochs=1, augment="light", image_size="auto",
        device="cpu"), Recorder())
    run, m = probe.run, manifest_of(result)
    assert type(run.learner.optimizer) is torch.optim.AdamW
    assert [g["initial_lr"] for g in run.learner.optimizer.param_groups] == [2e-3, 2e-3]
    assert m["config"]["warmup_epochs"] == 2.0  # the recipe's, resolved
    assert [g["weight_decay"] for g in run.learner.optimizer.param_groups] == [0.05, 0.0]
    assert run.learner.criterion.label_smoothing == 0.0  # from scratch
    assert run.learner.transform.preset == "light"
    assert m["config"]["label_smoothing"] == 0.0 and m["config"]["augment"] == "light"
    assert m["config"]["image_size"] == m["input"]["image_size"] == 32
    assert m["config"]["precision"] == m["runtime"]["precision"] == "fp32"
    assert m["runtime"]["device"] == "cpu"
    assert probe.forward == {(torch.float32, False)}


def test_image_size_auto_with_pretrained_weights_is_the_backbones_size(tmp_path, tiny_splits,
                                                                       monkeypatch):
    """Weights made 'available' at the provider boundary (a 1000-class state dict standing in
    for the published file): auto is the backbone's pretrained input size, 224 for
    mobilenet_v3_small, not the 32 px of the data; the weights are really loaded; the
    fine-tuning lr is the recipe's pretrained default."""
    import torchvision

    from training_agent.adapters.trainers.torchvision_provider import TorchvisionProvider

    torch.manual_seed(11)
    published = torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict()
    monkeypatch.setattr(TorchvisionProvider, "_pretrained_state",
                        staticmethod(lambda backbone, weights: published))
    loaded: dict[str, torch.Tensor] = {}

    def keep_initial(run: loop.TrainingRun) -> None:  # before the first step
        loaded.update({k: v.detach().clone() for k, v in run.learner.model.state_dict().items()})

    result = PyTorchTrainer(on_ready=keep_initial).train(make_request(
        tmp_path, tiny_splits, epochs=1, backbone="mobilenet_v3_small", pretrained=True,
        image_size="auto", batch_size=18), Recorder())
    m = manifest_of(result)
    assert m["input"]["image_size"] == m["config"]["image_size"] == 224
    assert m["pretrained"] is True and m["config"]["lr"] == 5e-4
    assert torch.equal(loaded["features.0.0.weight"], published["features.0.0.weight"])
    assert loaded["classifier.3.weight"].shape == (3, 1024)


def test_bf16_on_cpu_runs_under_cpu_autocast(tmp_path, tiny_splits, probe):
    result = probe.trainer.train(make_request(tmp_path, tiny_splits, epochs=1,
                                                 precision="bf16"), Recorder())
    m = manifest_of(result)
    assert m["config"]["precision"] == m["runtime"]["precision"] == "bf16"
    assert probe.forward == {(torch.bfloat16, True)}  # training and evaluation alike
    assert result.metrics["history"][0]["train_loss"] > 0


def test_timm_backbone_and_an_odd_batch_size(tmp_path, tiny_splits):
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs=1, trainer="timm", backbone="resnet10t", batch_size=7),
        Recorder())
    m = manifest_of(result)
    assert m["trainer"] == "timm" and m["backbone"] == "resnet10t"
    assert m["runtime"]["batch_per_rank"] == 7 and m["runtime"]["steps_per_epoch"] == 6


def test_compile_wires_torch_compile(tmp_path, tiny_splits, probe, monkeypatch):
    """`compile: true` hands the model to torch.compile and trains through what it returns
    (a recording identity here: a real compile takes minutes on this CPU)."""
    compiled: list[torch.nn.Module] = []

    def record(model, *args, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", record)
    sink = Recorder()
    result = probe.trainer.train(make_request(tmp_path, tiny_splits, epochs=1, compile=True),
                                 sink)
    learner = probe.run.learner
    assert compiled == [learner.model] and learner.step_model is learner.model
    m = manifest_of(result)
    assert m["runtime"]["compile"] is True
    # the compilation's cost is said: the first step's time, in the timings and the log
    assert m["timings"]["first_step_seconds"] > 0
    assert any(e.message and e.message.startswith("torch.compile: the first step took")
               for e in sink.events)
    monkeypatch.undo()
    compiled.clear()
    probe.trainer.train(make_request(tmp_path / "b", tiny_splits, epochs=1), Recorder())
    assert compiled == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, tiny_splits):
    with pytest.raises(TrainingError, match="device 'cuda' asked for, but no CUDA GPU"):
        PyTorchTrainer().train(make_request(tmp_path, tiny_splits, device="cuda"), Recorder())


def test_val_fraction_sets_the_held_out_share(tmp_path):
    """No val/ in the archive: val_fraction of each class's training images is held out."""
    from tests.fakes import FakeTrainer
    from training_agent.adapters.blobstore.memory import InMemoryBlobStore
    from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
    from training_agent.adapters.notifiers.memory import InMemoryNotifier
    from training_agent.domain.service import TrainingService
    from training_agent.testing.datasets import make_dataset_zip

    trainer = FakeTrainer()
    svc = TrainingService(repo=InMemoryMetadataRepo(), blobs=InMemoryBlobStore(),
                          trainer=trainer, notifier=InMemoryNotifier(),
                          model_store_url="mem://models", work_root=tmp_path)
    url = svc.blobs.put("mem://d.zip", make_dataset_zip(
        tmp_path / "d.zip", per_class={"train": 20}).read_bytes())
    project = svc.create_project("shapes", url, {"epochs": 1})
    for fraction, held in ((0.25, 5), (0.5, 10)):
        job = svc.run(svc.start(project.id, {"val_fraction": fraction}, force=True).id)
        assert job.state.value == "succeeded", job.error
        splits = trainer.requests[-1].splits
        assert splits.val_held_out
        assert (len(splits.val), len(splits.train)) == (3 * held, 3 * (20 - held))


def test_early_stopping_when_validation_stops_improving(tmp_path, tiny_splits):
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(
        tmp_path, tiny_splits, epochs=5, lr=1e-9, early_stopping_patience=1), sink)
    assert result.epochs_run == 2 and result.metrics["stop_reason"] == "early_stopping"
    assert result.metrics["best_epoch"] == 1
    assert any("early stopping" in m for m in sink.messages)


def test_time_budget_stops_training_and_says_so(tmp_path, tiny_splits):
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(tmp_path, tiny_splits, epochs=5,
                                                 max_minutes=0.0001), sink)
    assert result.epochs_run == 1 and result.metrics["stop_reason"] == "max_minutes"
    assert "stopped after epoch 1/5: max minutes" in sink.messages
    assert manifest_of(result)["config"]["max_minutes"] == 0.0001
    # the budget ran out inside epoch 1: it stopped before its 3 steps were done
    assert [e.step for e in sink.events if e.step] == [1]


def test_streamed_pipeline_matches_the_cache(tmp_path, tiny_splits, monkeypatch):
    """Same pixels, same order, same thread count (1): the same weights, bit for bit. (Over
    the memory budget with no disk budget: test_disk_cache.py has the cache on disk.)"""
    monkeypatch.setattr(environment, "_current",
                        replace(environment.current(), disk_cache_gb=0))
    cached = PyTorchTrainer(threads=1).train(make_request(tmp_path / "a", tiny_splits),
                                             Recorder())
    streamed = PyTorchTrainer(cache_bytes=0, threads=1).train(
        make_request(tmp_path / "b", tiny_splits), Recorder())
    assert streamed.metrics["history"][0]["images_per_second"] > 0
    a = torch.load(cached.artifacts["model.pth"], weights_only=True)
    b = torch.load(streamed.artifacts["model.pth"], weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_splits):
    runs = [PyTorchTrainer().train(make_request(tmp_path / str(i), tiny_splits, epochs=1,
                                                seed=seed), Recorder())
            for i, seed in enumerate((3, 3, 4))]
    assert [manifest_of(r)["config"]["seed"] for r in runs] == [3, 3, 4]
    w = [torch.load(r.artifacts["model.pth"], weights_only=True)["fc.weight"] for r in runs]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


@pytest.mark.parametrize("augment", ["auto", "shift"])
def test_auto_from_scratch_grows_the_shift_over_the_first_half_of_the_run(tmp_path, tiny_splits,
                                                                         probe, augment):
    """`auto` from scratch starts without translation and reaches the full shift halfway
    through the planned epochs (6 here: over 3); a named `shift` has its full reach from the
    first step. Each epoch's history says the strength it used and its training accuracy."""
    result = probe.trainer.train(make_request(tmp_path, tiny_splits, epochs=6, augment=augment,
                                              early_stopping_patience=None), Recorder())
    history, m = result.metrics["history"], manifest_of(result)
    assert probe.run.learner.transform.preset == m["config"]["augment"] == "shift"
    assert all(0.0 <= h["train_accuracy"] <= 1.0 for h in history)
    strengths = [h["augment_strength"] for h in history]
    if augment == "shift":
        assert strengths == [1.0] * 6 and m["runtime"]["augment_ramp_epochs"] is None
    else:
        assert strengths == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0])
        assert m["runtime"]["augment_ramp_epochs"] == 3.0
    assert probe.run.learner.transform.strength == 1.0


def test_auto_from_scratch_adds_colour_invariance_when_colours_say_nothing(tmp_path, probe):
    """Outline shapes in random colours: before the first augmented epoch the colour check
    finds that colours do not tell the classes apart, and the shift becomes `shift-colour`;
    the manifest and the job's log say so. The colour-coded tiny data keeps `shift`."""
    zip_path = make_family_zip(tmp_path / "shapes.zip", "shapes",
                               {"train": 14, "val": 4, "test": 2})
    rec = Recorder()
    result = probe.trainer.train(make_request(tmp_path, splits_of(zip_path, tmp_path / "d"),
                                              epochs=3, early_stopping_patience=None), rec)
    m = manifest_of(result)
    check = m["runtime"]["colour_check"]
    assert m["config"]["augment"] == probe.run.learner.transform.preset == "shift-colour"
    assert check["colour_invariance"] and check["images"] == 56
    assert check["colour_guess"] <= check["bar"]
    said = [e.message for e in rec.events if e.message and "colour check" in e.message]
    assert len(said) == 1 and "do not tell the classes apart" in said[0]


def test_colour_coded_classes_keep_their_colours_and_a_named_preset_is_not_asked(
        tmp_path, tiny_splits):
    auto = PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, epochs=2),
                                  Recorder())
    m = manifest_of(auto)
    assert m["config"]["augment"] == "shift"
    assert m["runtime"]["colour_check"]["informative"] is True
    named = PyTorchTrainer().train(make_request(tmp_path / "n", tiny_splits, epochs=2,
                                                augment="shift-colour"), Recorder())
    m = manifest_of(named)
    assert m["config"]["augment"] == "shift-colour" and m["runtime"]["colour_check"] is None


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_augment_presets_keep_shape_and_range(preset):
    t = BatchTransform(preset, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    y = t.train(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    if preset == "none":
        assert torch.allclose(y, t.eval(x))
    else:
        assert not torch.allclose(y, t.eval(x))


def test_no_validation_images_keeps_the_last_epoch(tmp_path):
    """One image per class: nothing can be held out, so no early stopping on an empty split."""
    from training_agent.testing.datasets import make_dataset_zip

    from .conftest import splits_of

    zip_path = make_dataset_zip(tmp_path / "one.zip", per_class={"train": 1})
    splits = splits_of(zip_path, tmp_path / "data")
    assert splits.val == []
    result = PyTorchTrainer().train(make_request(tmp_path, splits, epochs=3,
                                                 early_stopping_patience=1), Recorder())
    assert result.epochs_run == 3 and result.metrics["best_epoch"] == 3
