"""Distributed data parallel on 2 CPU processes (gloo) launched by torchrun through the
service: both ranks end with identical weights; one upload, one models row, one success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.service import TrainingService
from training_agent.testing.datasets import make_dataset_zip

FACTORY = '''
"""Builds each rank's service on one shared SQLite store and file:// model store; records each
rank's final weights so the test can compare them."""
import os
from pathlib import Path

import torch

from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers import loop
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.service import TrainingService

HOME = Path(os.environ["DDP_TEST_HOME"])
_finish = loop.TrainingRun._finish


def _probe(self):
    result = _finish(self)
    torch.save(self.model.state_dict(), HOME / f"rank{self.dist.rank}.pt")
    return result


loop.TrainingRun._finish = _probe


def build_service():
    return TrainingService(
        repo=SqliteMetadataRepo(HOME / "meta.db"), blobs=LocalBlobStore(),
        trainer=PyTorchTrainer(threads=1), notifier=InMemoryNotifier(),
        model_store_url=(HOME / "store").as_uri(), work_root=HOME / "work")
'''


def service(home: Path) -> TrainingService:
    return TrainingService(
        repo=SqliteMetadataRepo(home / "meta.db"), blobs=LocalBlobStore(),
        trainer=PyTorchTrainer(), notifier=InMemoryNotifier(),
        model_store_url=(home / "store").as_uri(), work_root=home / "work")


def test_two_gloo_ranks_train_one_model(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "ddp_factory.py").write_text(textwrap.dedent(FACTORY))
    data = make_dataset_zip(tmp_path / "shapes.zip", per_class={"train": 12, "val": 4, "test": 4})
    project = service(home).create_project("shapes", data.as_uri())
    config = {"pretrained": False, "epochs": 2, "batch_size": 16, "image_size": 32}

    env = {**os.environ, "DDP_TEST_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "training_agent.entrypoints.distributed", project.id,
         "--nproc-per-node", "2", "--config", json.dumps(config),
         "--service-factory", "ddp_factory:build_service"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    svc = service(home)
    job = svc.repo.latest_job(project.id)
    assert job is not None and job.state.value == "succeeded"
    assert svc.repo.get_project(project.id).status.value == "pending_evaluation"
    models = svc.repo.list_models(project.id)
    assert len(models) == 1
    uploads = list((home / "store" / "models" / project.id).iterdir())
    assert [u.name for u in uploads] == [job.id]
    assert sorted(p.name for p in uploads[0].iterdir()) == sorted(
        ["model.pth", "model.safetensors", "manifest.json", "training_curves.png",
         "confusion_matrix.png"])

    rank0, rank1 = (torch.load(home / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    uploaded = torch.load(uploads[0] / "model.pth", weights_only=True)
    assert all(torch.equal(rank0[k], uploaded[k]) for k in rank0)
    manifest = json.loads((uploads[0] / "manifest.json").read_text())
    assert manifest["runtime"]["world_size"] == 2
    assert manifest["dataset"]["counts"] == {"train": 36, "val": 12, "test": 12}
    assert manifest["metrics"]["test_accuracy"] == models[0].accuracy
    assert not (home / "work" / "rank-1" / "checkpoints").exists()
