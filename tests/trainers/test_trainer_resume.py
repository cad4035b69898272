"""Checkpoints: a job stopped after epoch 2 of 4 resumes at epoch 3 and ends with exactly the
weights of an uninterrupted run with the same seed (CPU kernels here are deterministic, so the
tolerance is zero); a changed config starts fresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.errors import JobCancelled
from training_agent.testing.families import make_family_zip

from .conftest import Recorder, make_request, splits_of

RUN = {"epochs": 4, "seed": 7, "early_stopping_patience": None}


def weights(result) -> dict[str, torch.Tensor]:
    return torch.load(result.artifacts["model.pth"], weights_only=True)


def test_resumes_after_a_stop_with_the_same_final_weights(tmp_path, tiny_splits):
    whole = PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, **RUN), Recorder())

    ckpt = tmp_path / "b" / "checkpoints"
    stopping = Recorder(cancel_after_epoch=2)
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "b", tiny_splits, ckpt, **RUN), stopping)
    assert [e.epoch for e in stopping.epochs] == [1, 2]
    assert (ckpt / "last.pt").exists()

    again = Recorder()
    resumed = PyTorchTrainer().train(make_request(tmp_path / "c", tiny_splits, ckpt, **RUN),
                                     again)
    assert "resuming from checkpoint of epoch 2/4" in again.messages
    assert [e.epoch for e in again.epochs] == [3, 4]
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3, 4]
    def curve(r):
        return [(h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in r.metrics["history"]]

    assert curve(resumed) == curve(whole)
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.accuracy == whole.accuracy
    assert not (ckpt / "last.pt").exists()


def test_a_changed_config_starts_fresh(tmp_path, tiny_splits):
    ckpt = tmp_path / "checkpoints"
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path, tiny_splits, ckpt, **RUN),
                               Recorder(cancel_after_epoch=1))
    sink = Recorder()
    PyTorchTrainer().train(make_request(tmp_path, tiny_splits, ckpt, **{**RUN, "epochs": 2,
                                                                         "lr": 0.002}), sink)
    assert [e.epoch for e in sink.epochs] == [1, 2]
    assert any("another config" in m for m in sink.messages)
    assert not any("resuming" in m for m in sink.messages)


def test_a_cancelled_job_resumes_in_the_next_job_and_says_so(tmp_path):
    """Through the service: cancel after epoch 2 of 4, start again, the new job resumes from
    the project's checkpoint and agent_logs says so."""
    from training_agent.adapters.blobstore.memory import InMemoryBlobStore
    from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
    from training_agent.adapters.notifiers.memory import InMemoryNotifier
    from training_agent.domain.service import TrainingService
    from training_agent.testing.datasets import make_dataset_zip

    service = TrainingService(repo=InMemoryMetadataRepo(), blobs=InMemoryBlobStore(),
                              trainer=PyTorchTrainer(), notifier=InMemoryNotifier(),
                              model_store_url="mem://models", work_root=tmp_path / "home")
    url = service.blobs.put("mem://d.zip", make_dataset_zip(tmp_path / "d.zip").read_bytes())
    project = service.create_project("shapes", url, {
        "pretrained": False, "epochs": 4, "image_size": 32, "batch_size": 16,
        "early_stopping_patience": None})

    def messages() -> list[str]:
        return [e.message for e in service.repo.recent_logs(project.id, 200)]

    def cancel_after_epoch_2(job) -> None:
        if "epoch 2/4" in messages() and job.active:
            service.cancel(project.id)

    first = service.run(service.start(project.id).id, on_progress=cancel_after_epoch_2)
    assert first.state.value == "cancelled"
    assert (tmp_path / "home" / "checkpoints" / project.id / "last.pt").exists()

    # the cancel is seen at the job's next progress save: epoch 2's end or a little later
    ckpt = tmp_path / "home" / "checkpoints" / project.id / "last.pt"
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert done in (2, 3)

    second = service.run(service.start(project.id).id)
    assert second.state.value == "succeeded", second.error
    assert f"resuming from checkpoint of epoch {done}/4" in messages()
    [model] = service.repo.list_models(project.id)
    assert model.metadata["epochs"] == 4
    assert not (tmp_path / "home" / "checkpoints" / project.id / "last.pt").exists()


@pytest.mark.parametrize("damage", ["torn", "not-a-checkpoint", "other-model"])
def test_an_unusable_checkpoint_is_ignored_and_said(tmp_path, tiny_splits, damage):
    """A torn `last.pt` (cut mid-write), a file that is not a complete checkpoint, or one whose
    tensors do not fit the model: the job says so in its messages, starts fresh, succeeds."""
    ckpt = tmp_path / "checkpoints"
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, ckpt, **RUN),
                               Recorder(cancel_after_epoch=2))
    path = ckpt / "last.pt"
    if damage == "torn":
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "not-a-checkpoint":
        torch.save({"epoch": 2}, path)
    else:
        state = torch.load(path, weights_only=True)
        state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("fc.")}
        torch.save(state, path)
    sink = Recorder()
    result = PyTorchTrainer().train(make_request(tmp_path / "b", tiny_splits, ckpt, **RUN), sink)
    assert any(m.startswith("ignored an unusable checkpoint (last.pt") for m in sink.messages)
    assert not any("resuming" in m for m in sink.messages)
    assert [e.epoch for e in sink.epochs] == [1, 2, 3, 4]
    assert result.epochs_run == 4


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """The bytes go to a temporary file that is renamed over `last.pt` only once complete."""
    from training_agent.adapters.trainers import checkpoints

    checkpoints.save(tmp_path, {"epoch": 1})
    real_save = torch.save

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # stands for the process dying mid-write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(tmp_path, {"epoch": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / "last.pt", weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Watching(Recorder):
    """Notes, at each epoch's end, whether `last.pt` is on disk (and which epoch it holds)."""

    def __init__(self, ckpt: Path, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kw)
        self.ckpt, self.on_disk = ckpt, []

    def __call__(self, p):  # type: ignore[no-untyped-def]
        if p.step is None and p.message is None:
            path = self.ckpt / "last.pt"
            self.on_disk.append(torch.load(path, weights_only=True)["epoch"]
                                if path.exists() else None)
        super().__call__(p)


def test_a_short_job_writes_its_checkpoint_only_when_it_stops(tmp_path, tiny_splits,
                                                               monkeypatch):
    """The default writes at most every 30 s: a job of a few seconds writes none while it
    trains, yet a cancel leaves its last finished epoch on disk, and it resumes from there.
    With TRAINING_AGENT_CHECKPOINT_SECONDS=0 every epoch is written."""
    from training_agent.adapters.trainers import environment

    ckpt = tmp_path / "checkpoints"
    sink = Watching(ckpt, cancel_after_epoch=3)
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, ckpt, **RUN), sink)
    assert sink.on_disk == [None, None, None]  # nothing written during epochs 1 to 3
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 3  # the cancel's
    again = Recorder()
    PyTorchTrainer().train(make_request(tmp_path / "b", tiny_splits, ckpt, **RUN), again)
    assert "resuming from checkpoint of epoch 3/4" in again.messages

    monkeypatch.setattr(environment, "_current",
                        environment.TrainerEnvironment(checkpoint_seconds=0))
    every = Watching(tmp_path / "every", cancel_after_epoch=2)
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "c", tiny_splits, tmp_path / "every",
                                            **RUN), every)
    # epoch 2's write waits for epoch 1's: at epoch 2's end the file holds one of them
    assert every.on_disk[1] in (1, 2)


def test_with_a_write_every_epoch_the_resumed_run_still_ends_with_the_same_weights(
        tmp_path, tiny_splits, monkeypatch):
    """Each epoch's copy reuses the memory of a copy already written (checkpoints.snapshot):
    the file a cancel leaves must still be exactly its epoch's state, never a mix of two."""
    from training_agent.adapters.trainers import environment

    whole = PyTorchTrainer().train(make_request(tmp_path / "a", tiny_splits, **RUN), Recorder())
    monkeypatch.setattr(environment, "_current",
                        environment.TrainerEnvironment(checkpoint_seconds=0))
    ckpt = tmp_path / "b" / "checkpoints"
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "b", tiny_splits, ckpt, **RUN),
                               Recorder(cancel_after_epoch=3))
    again = Recorder()
    resumed = PyTorchTrainer().train(make_request(tmp_path / "c", tiny_splits, ckpt, **RUN),
                                     again)
    assert "resuming from checkpoint of epoch 3/4" in again.messages
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_asks_the_colour_check_again_and_ends_with_the_same_weights(tmp_path):
    """Shapes in random colours: `auto` becomes `shift-colour` in epoch 2 of the uninterrupted
    run; a run stopped after epoch 2 and resumed asks again (same sample, same answer) and
    ends with exactly the same weights."""
    zip_path = make_family_zip(tmp_path / "shapes.zip", "shapes",
                               {"train": 10, "val": 3, "test": 2})
    splits = splits_of(zip_path, tmp_path / "data")
    whole = PyTorchTrainer().train(make_request(tmp_path / "a", splits, **RUN), Recorder())
    ckpt = tmp_path / "b" / "checkpoints"
    with pytest.raises(JobCancelled):
        PyTorchTrainer().train(make_request(tmp_path / "b", splits, ckpt, **RUN),
                               Recorder(cancel_after_epoch=2))
    again = Recorder()
    resumed = PyTorchTrainer().train(make_request(tmp_path / "c", splits, ckpt, **RUN), again)
    assert [e.epoch for e in again.epochs] == [3, 4]
    assert any("colour check: colours do not tell" in m for m in again.messages)
    for r in (whole, resumed):
        m = json.loads(r.artifacts["manifest.json"].read_text())
        assert m["config"]["augment"] == "shift-colour"
        assert m["runtime"]["colour_check"]["colour_invariance"] is True
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
