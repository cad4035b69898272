"""A job really killed (SIGKILL, no cleanup, no cancel) after epoch 2 of 4 resumes in the next
job from the checkpoint of epoch 2 and ends with the same final weights as an uninterrupted
run with the same seed. CPU kernels here are deterministic and both runs use the same thread
count, so the tolerance is zero: the weights are compared bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training_agent.entrypoints.container import build_container
from training_agent.entrypoints.settings import Settings
from training_agent.testing.datasets import make_dataset_zip

EPOCHS = 4
CONFIG = {"pretrained": False, "backbone": "resnet18", "epochs": EPOCHS, "image_size": 32,
          "batch_size": 16, "seed": 5, "early_stopping_patience": None}

# The real `training-agent train` command, on a "slow machine": from step 2 of epoch 3 on,
# each step report sleeps, so the kill surely lands inside epoch 3, with weights already
# changed by its first steps and never checkpointed (the numbers are untouched: only time).
SLOW_CLI = """
import sys, time
from training_agent.adapters.trainers import pytorch
from training_agent.entrypoints.cli import main

built = pytorch.PyTorchTrainer.__init__

def slow(run):  # the trainer's on_ready: every step's progress report goes through run.ctx.sink
    report = run.ctx.sink

    def sink(p):
        if p.epoch >= 3 and p.step is not None and p.step >= 2:
            time.sleep(5)
        report(p)

    run.ctx.sink = sink

def build(self, *args, **kwargs):
    built(self, *args, **{**kwargs, "on_ready": slow})

pytorch.PyTorchTrainer.__init__ = build
sys.exit(main())
"""


def epoch_of(ckpt: Path) -> int | None:
    """The epoch `last.pt` holds; it is renamed into place whole, so any read sees a complete
    file (mmap: only the small pickle is read, not the tensors)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except FileNotFoundError:
        return None


def model_weights(url: str) -> dict[str, torch.Tensor]:
    assert url.startswith("file://")
    return torch.load(url.removeprefix("file://"), weights_only=True)


@pytest.mark.timeout(120)
def test_a_killed_job_resumes_from_epoch_3_with_the_same_weights(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(home))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    container = build_container(Settings())
    service = container.training_service()
    data = make_dataset_zip(tmp_path / "shapes.zip", classes=3, size=32,
                            per_class={"train": 20, "val": 4, "test": 4})
    url = service.store_dataset(data)
    killed = service.create_project("killed", url, CONFIG)
    ckpt = home / "work" / "checkpoints" / killed.id / "last.pt"

    # a checkpoint after every epoch (the default writes at most every 30 s, and when a job
    # ends by an exception: a SIGKILL leaves no chance to)
    env = {**os.environ, "TRAINING_AGENT_HOME": str(home), "LOG_LEVEL": "WARNING",
           "TRAINING_AGENT_CHECKPOINT_SECONDS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, "train", killed.id, "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while (seen := epoch_of(ckpt)) != 2:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert seen in (None, 1), f"missed the window: checkpoint already at epoch {seen}"
            assert time.monotonic() < deadline, "epoch 2's checkpoint never appeared"
            time.sleep(0.05)
        time.sleep(0.5)  # let epoch 3 get under way (its steps stall from step 2 on)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    stale = service.repo.latest_job(killed.id)
    assert stale is not None and stale.active  # nobody was left to end it
    assert epoch_of(ckpt) == 2
    service.fail_job(stale.id, "the process running it was killed")
    assert service.repo.get_project(killed.id).status.value == "training_failed"

    again = service.run(service.start(killed.id).id)
    assert again.state.value == "succeeded", again.error
    logs = [e.message for e in reversed(service.repo.recent_logs(killed.id, 500))]
    after_restart = logs[logs.index("training failed at step training: "
                                    "the process running it was killed"):]
    assert "resuming from checkpoint of epoch 2/4" in after_restart
    assert [m for m in after_restart if m.startswith("epoch ")] == ["epoch 3/4", "epoch 4/4"]
    assert not ckpt.exists()

    whole = service.create_project("whole", url, CONFIG)
    uninterrupted = service.run(service.start(whole.id).id)
    assert uninterrupted.state.value == "succeeded", uninterrupted.error
    [resumed_model] = service.repo.list_models(killed.id)
    [whole_model] = service.repo.list_models(whole.id)
    a, b = model_weights(resumed_model.url), model_weights(whole_model.url)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_model.accuracy == whole_model.accuracy
    assert resumed_model.metadata["epochs"] == whole_model.metadata["epochs"] == EPOCHS
