"""The deployment the seed describes, on real servers: the dataset zip in GCS (emulator),
metadata in Postgres, the model store on S3 (moto), all chosen by the container from settings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from tests.contract.conftest import AWS_TEST_ENV, BUCKET, GCS_DENIED
from tests.contract.servers import FaultProxy
from tests.fakes import FakeTrainer
from training_agent.adapters.blobstore.gcs import GcsBlobStore
from training_agent.adapters.blobstore.s3 import S3BlobStore
from training_agent.adapters.metadata.postgres import PostgresMetadataRepo
from training_agent.domain.models import Dataset, JobState, Project, ProjectStatus
from training_agent.entrypoints.container import build_container
from training_agent.entrypoints.settings import Settings
from training_agent.testing.datasets import make_dataset_zip


@pytest.fixture
def cloud(clean_postgres: str, gcs_proxy: FaultProxy, s3_proxy: FaultProxy, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The environment an operator would set, and a project whose dataset is in GCS."""
    gcs_proxy.reset()
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    env = {"DATABASE_URL": clean_postgres, "MODEL_STORE_URL": f"s3://{BUCKET}/store",
           "S3_ENDPOINT_URL": s3_proxy.url, "STORAGE_EMULATOR_HOST": gcs_proxy.url,
           "TRAINING_AGENT_HOME": str(tmp_path / "home"), **AWS_TEST_ENV}
    archive = make_dataset_zip(tmp_path / "shapes.zip", classes=3, size=32,
                               per_class={"train": 12, "val": 4, "test": 4})
    dataset_url = f"gs://{BUCKET}/datasets/{uuid.uuid4().hex}/shapes.zip"
    GcsBlobStore(emulator_host=gcs_proxy.url).upload(archive, dataset_url)
    repo = PostgresMetadataRepo(clean_postgres, migrate=False, pool_size=1)
    project = repo.add_project(Project(name="shapes", training_config={
        "pretrained": False, "backbone": "resnet18", "image_size": 32, "batch_size": 16}))
    repo.add_dataset(Dataset(project_id=project.id, gcs_url=dataset_url, num_classes=3))
    yield {"env": env, "repo": repo, "project": project, "gcs": gcs_proxy, "s3": s3_proxy}
    repo.close()


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()
                                       if not k.startswith("AWS_")})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_container_wires_postgres_gcs_and_s3(cloud, tmp_path):
    container = build_container(settings_from(cloud["env"]))
    container.trainer.override(providers.Object(FakeTrainer()))
    repo, project = cloud["repo"], cloud["project"]
    service = container.training_service()
    assert type(container.metadata_repo()).__name__ == "PostgresMetadataRepo"

    job = service.run(service.start(project.id).id)

    assert job.state is JobState.SUCCEEDED, job.error
    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    [model] = repo.list_models(project.id)
    assert model.url == f"s3://{BUCKET}/store/models/{project.id}/{job.id}/model.pth"
    weights = tmp_path / "model.pth"
    S3BlobStore(endpoint_url=cloud["s3"].url).download(model.url, weights)
    assert sha256(weights) == model.metadata["sha256"]
    assert [e.level for e in repo.recent_logs(project.id)].count("error") == 0


def test_storage_permission_denied_is_logged_and_fails_the_project(cloud):
    container = build_container(settings_from(cloud["env"]))
    container.trainer.override(providers.Object(FakeTrainer()))
    repo, project = cloud["repo"], cloud["project"]
    status, body, content_type = GCS_DENIED
    cloud["gcs"].fail(status, body, content_type, times=None)
    service = container.training_service()

    job = service.run(service.start(project.id).id)

    assert job.state is JobState.FAILED and "StoragePermissionDenied" in (job.error or "")
    assert repo.get_project(project.id).status is ProjectStatus.TRAINING_FAILED
    errors = [e for e in repo.recent_logs(project.id) if e.level == "error"]
    assert errors and "permission denied" in errors[0].message
    assert repo.list_models(project.id) == []


@pytest.mark.slow
def test_cli_trains_a_gcs_dataset_into_s3_with_postgres_metadata(cloud, tmp_path):
    repo, project = cloud["repo"], cloud["project"]
    proc = subprocess.run(
        [sys.executable, "-m", "training_agent", "train", project.id, "--epochs", "1",
         "--quiet"], env={**os.environ, **cloud["env"], "LOG_LEVEL": "WARNING"},
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert repo.get_project(project.id).status is ProjectStatus.PENDING_EVALUATION
    [model] = repo.list_models(project.id)
    assert model.url.startswith(f"s3://{BUCKET}/store/models/{project.id}/")
    s3 = S3BlobStore(endpoint_url=cloud["s3"].url)
    weights, manifest = tmp_path / "model.pth", tmp_path / "manifest.json"
    s3.download(model.url, weights)
    s3.download(model.url.removesuffix("model.pth") + "manifest.json", manifest)
    listed = json.loads(manifest.read_text())["artifacts"]["model.pth"]
    assert listed == {"sha256": sha256(weights), "bytes": weights.stat().st_size}
    assert model.metadata["sha256"] == sha256(weights)
