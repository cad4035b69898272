"""Distributed data parallel on 2 CPU processes (gloo) launched by torchrun: rank 0 runs the
job through the service, the follower only the training loop; both ranks end with identical
weights; one upload, one models row, one success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.errors import TrainingError
from training_agent.domain.ports import Notification
from training_agent.domain.service import TrainingService
from training_agent.entrypoints import distributed
from training_agent.entrypoints.worker.process import NOTIFY_FLUSH_SECONDS
from training_agent.testing.datasets import make_dataset_zip

FACTORY = '''
"""Builds each rank's service on one shared SQLite store and file:// model store; records each
rank's final weights so the test can compare them."""
import atexit
import os
from pathlib import Path

import torch

from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.memory import InMemoryNotifier
from training_agent.adapters.trainers.pytorch import PyTorchTrainer
from training_agent.domain.service import TrainingService

HOME = Path(os.environ["DDP_TEST_HOME"])


class FlushRecorder(InMemoryNotifier):
    """Records (in a file, for the test) that rank 0 flushed its notifier before exiting."""

    def flush(self, timeout):
        (HOME / "flushed.txt").write_text(f"{timeout} {len(self.sent)}")


def keep_final_weights(run):
    """Called once the run is set up (the trainer's on_ready): its weights as the process
    ends are the ones the run handed back."""
    atexit.register(lambda: torch.save(run.learner.model.state_dict(),
                                       HOME / f"rank{run.ctx.dist.rank}.pt"))


def build_service():
    return TrainingService(
        repo=SqliteMetadataRepo(HOME / "meta.db"), blobs=LocalBlobStore(),
        trainer=PyTorchTrainer(threads=1, on_ready=keep_final_weights,
                               cache_bytes=int(os.environ.get("DDP_CACHE_BYTES", 1 << 30))),
        notifier=FlushRecorder(),
        model_store_url=(HOME / "store").as_uri(), work_root=HOME / "work")
'''


def service(home: Path) -> TrainingService:
    return TrainingService(
        repo=SqliteMetadataRepo(home / "meta.db"), blobs=LocalBlobStore(),
        trainer=PyTorchTrainer(), notifier=InMemoryNotifier(),
        model_store_url=(home / "store").as_uri(), work_root=home / "work")


class RecordingNotifier(InMemoryNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[tuple[float, int]] = []

    def flush(self, timeout: float) -> None:
        self.flushes.append((timeout, len(self.sent)))


@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_rank_0_beats_while_it_runs_and_flushes_the_notifier(tmp_path, monkeypatch, fails):
    """Rank 0's part, without a process group: the job is beaten under rank 0's name from
    before it starts, and the notifier is flushed after the last notification, success or not."""
    from training_agent.adapters.blobstore.memory import InMemoryBlobStore
    from training_agent.adapters.metadata.memory import InMemoryMetadataRepo

    notifier = RecordingNotifier()
    trainer = FakeTrainer(fail_with=TrainingError("boom") if fails else None)
    svc = TrainingService(repo=InMemoryMetadataRepo(), blobs=InMemoryBlobStore(),
                          trainer=trainer, notifier=notifier, model_store_url="mem://models",
                          work_root=tmp_path)
    url = svc.blobs.put("mem://d.zip", make_dataset_zip(tmp_path / "d.zip").read_bytes())
    project = svc.create_project("shapes", url, {"epochs": 2})
    job_id = svc.start(project.id).id
    beats: list[tuple[str, str | None, str]] = []
    real_heartbeat = svc.heartbeat

    def heartbeat(jid: str, owner: str | None = None) -> bool:
        beats.append((jid, owner, svc.repo.get_job(jid).state.value))
        return real_heartbeat(jid, owner)

    monkeypatch.setattr(svc, "heartbeat", heartbeat)
    sent: list[Notification] = notifier.sent
    job = distributed.run_primary(svc, job_id)
    assert job.state.value == ("failed" if fails else "succeeded")
    assert beats and beats[0][0] == job_id and beats[0][2] == "queued"
    assert beats[0][1].startswith("torchrun@") and beats[0][1].endswith(f"/pid:{os.getpid()}")
    assert svc.repo.get_job(job_id).worker_id == beats[0][1]
    assert notifier.flushes == [(NOTIFY_FLUSH_SECONDS, 1)] and sent[0].ok is not fails


@pytest.mark.parametrize("cache", ["host", "disk"])
def test_two_gloo_ranks_train_one_model(tmp_path, cache):
    """With "disk", the cache is over the memory budget: each rank's share in a file of its
    own on the scratch disk, the same decision on both ranks."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "ddp_factory.py").write_text(textwrap.dedent(FACTORY))
    data = make_dataset_zip(tmp_path / "shapes.zip", per_class={"train": 12, "val": 4, "test": 4})
    project = service(home).create_project("shapes", data.as_uri())
    config = {"pretrained": False, "epochs": 2, "batch_size": 16, "image_size": 32}

    env = {**os.environ, "DDP_TEST_HOME": str(home), "OMP_NUM_THREADS": "1",
           "DDP_CACHE_BYTES": "0" if cache == "disk" else str(1 << 30),
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
    # rank 0 beat for the job under its own name, and flushed its notifier after the success
    assert job.worker_id and job.worker_id.startswith("torchrun@") and "/rank0/pid:" in job.worker_id
    assert job.heartbeat_at is not None and job.heartbeat_at >= job.created_at
    assert (home / "flushed.txt").read_text() == f"{NOTIFY_FLUSH_SECONDS} 1"
    assert svc.repo.get_project(project.id).status.value == "pending_evaluation"
    models = svc.repo.list_models(project.id)
    assert len(models) == 1
    uploads = list((home / "store" / "models" / project.id).iterdir())
    assert [u.name for u in uploads] == [job.id]
    assert sorted(p.name for p in uploads[0].iterdir()) == sorted(
        ["model.pth", "model.safetensors", "manifest.json", "training_curves.png",
         "confusion_matrix.png", "dataset_report.json", "report.json", "report.html"])

    rank0, rank1 = (torch.load(home / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    uploaded = torch.load(uploads[0] / "model.pth", weights_only=True)
    assert all(torch.equal(rank0[k], uploaded[k]) for k in rank0)
    manifest = json.loads((uploads[0] / "manifest.json").read_text())
    assert manifest["runtime"]["world_size"] == 2 and manifest["runtime"]["cache"] == cache
    assert not list((home / "work").rglob("*.u8"))  # the disk cache's files are gone
    assert manifest["dataset"]["counts"] == {"train": 36, "val": 12, "test": 12}
    assert manifest["metrics"]["test_accuracy"] == models[0].accuracy
    # the follower trained on rank 0's extracted dataset: no download, extraction or
    # checkpoint of its own
    assert not (home / "work" / "rank-1").exists()


def test_cli_train_with_nproc_per_node(tmp_path):
    """`training-agent train --nproc-per-node 2` on the embedded default: one job, one model."""
    env = {**os.environ, "TRAINING_AGENT_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "training_agent", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    data = make_dataset_zip(tmp_path / "shapes.zip")
    config = {"pretrained": False, "epochs": 1, "batch_size": 16, "image_size": 32}
    created = cli("project", "create", "--name", "shapes", "--dataset", str(data),
                  "--config", json.dumps(config))
    assert created.returncode == 0, created.stderr
    project_id = created.stdout.strip().splitlines()[-1]
    trained = cli("train", project_id, "--nproc-per-node", "2")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    view = json.loads(cli("status", project_id, "--json").stdout)
    assert view["project_status"] == "pending_evaluation"
    assert view["job"]["state"] == "succeeded" and view["job"]["model_url"].endswith("model.pth")


def test_a_follower_on_another_machine_fetches_the_same_dataset(tmp_path):
    """Where rank 0's dataset zip is not readable (another node), a follower downloads the
    zip from its URL, checks it is the same (sha256) and indexes it with the same intake:
    the same classes and the same split, file by file, read from its own copy."""
    from training_agent.domain.errors import TrainingAgentError
    from training_agent.domain.service import sha256_of

    from .conftest import make_request, splits_of

    data = make_dataset_zip(tmp_path / "shapes.zip", per_class={"train": 10, "test": 2})
    rank0 = splits_of(data, tmp_path / "rank0")  # no val/: 15 % of train/ held out by seed
    request = make_request(tmp_path, rank0).model_copy(update={
        "dataset_url": data.as_uri(), "dataset_sha256": sha256_of(data)})
    svc = service(tmp_path / "home")
    assert distributed.local_request(svc, request, tmp_path / "node1") is request  # readable

    gone = request.model_copy(update={"splits": rank0.model_copy(
        update={"root": tmp_path / "elsewhere", "archive": tmp_path / "elsewhere.zip"})})
    local = distributed.local_request(svc, gone, tmp_path / "node1").splits
    assert local.root == tmp_path / "node1" / "data" and local.class_names == rank0.class_names

    def names(items):
        return [(p.relative_to(p.parents[2]).as_posix(), label) for p, label in items]

    for split in ("train", "val", "test"):
        assert names(getattr(local, split)) == names(getattr(rank0, split))
    assert local.archive == tmp_path / "node1" / "dataset.zip" and local.archive.is_file()

    changed = gone.model_copy(update={"dataset_sha256": "f" * 64})
    with pytest.raises(TrainingAgentError, match="changed while the job ran"):
        distributed.local_request(svc, changed, tmp_path / "node2")


def test_a_job_that_fails_before_training_stops_every_rank(tmp_path):
    """Rank 0's job fails while it downloads (the dataset is gone): rank 0 tells the waiting
    follower that nothing will train, and the command ends failed instead of hanging."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "ddp_factory.py").write_text(textwrap.dedent(FACTORY))
    data = make_dataset_zip(tmp_path / "shapes.zip")
    project = service(home).create_project("shapes", data.as_uri())
    data.unlink()
    env = {**os.environ, "DDP_TEST_HOME": str(home), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "training_agent.entrypoints.distributed", project.id,
         "--nproc-per-node", "2", "--service-factory", "ddp_factory:build_service"],
        env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    job = service(home).repo.latest_job(project.id)
    assert job is not None and job.state.value == "failed"
    assert job.error and job.error.startswith("BlobNotFound")
    assert not (home / "work" / "rank-1").exists()
