"""Settings: which store each setting picks (the README's precedence), and the test environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dependency_injector import providers
from pydantic import ValidationError

from training_agent.adapters.blobstore.gcs import GcsBlobStore
from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.blobstore.s3 import S3BlobStore
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo
from training_agent.entrypoints import container as container_module
from training_agent.entrypoints.container import build_container
from training_agent.entrypoints.settings import Settings, describe_settings_error

ROOT = Path(__file__).resolve().parents[2]


def test_supabase_variables_enable_the_live_test_and_reach_no_other_test():
    """SUPABASE_URL/SUPABASE_KEY (issue 4's words) run the live test: tests/conftest.py hands
    them to TEST_SUPABASE_* and clears them for everything else."""
    env = {**os.environ, "SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_KEY": "k1"}
    env.pop("TEST_SUPABASE_URL", None)
    env.pop("TEST_SUPABASE_KEY", None)
    probe = ("import json, os, tests.conftest; print(json.dumps({k: os.environ.get(k) for k in "
             "('SUPABASE_URL', 'SUPABASE_KEY', 'TEST_SUPABASE_URL', 'TEST_SUPABASE_KEY')}))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == {"SUPABASE_URL": None, "SUPABASE_KEY": None,
                               "TEST_SUPABASE_URL": "https://ref.supabase.co",
                               "TEST_SUPABASE_KEY": "k1"}

    env["TEST_SUPABASE_URL"] = "https://other.supabase.co"  # an explicit test project wins
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out)["TEST_SUPABASE_URL"] == "https://other.supabase.co"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "GCP_BUCKET_NAME",
                 "MODEL_STORE_URL", "NOTIFY_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINING_AGENT_HOME", str(tmp_path / "home"))


# ---- the README's precedence, and the adapters the container's selectors pick ----------------
PG = "postgresql://agent:pw@db.invalid:5432/agent"
SB = {"SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_KEY": "service-role"}


@pytest.mark.parametrize("env, backend", [
    ({"DATABASE_URL": PG, **SB}, "postgres"),  # DATABASE_URL wins over Supabase
    (SB, "supabase"),
    ({"SUPABASE_URL": SB["SUPABASE_URL"]}, "sqlite"),  # Supabase needs both
    ({"SUPABASE_KEY": SB["SUPABASE_KEY"]}, "sqlite"),
    ({}, "sqlite"),
], ids=["postgres-over-supabase", "supabase", "url-only", "key-only", "nothing"])
def test_metadata_store_precedence(monkeypatch, tmp_path, env, backend):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.metadata_backend == backend
    container = build_container(settings)
    selector = container.metadata_repo
    assert set(selector.providers) == {"postgres", "supabase", "sqlite"}
    factories = {"postgres": container_module._postgres_repo,
                 "supabase": container_module._supabase_repo, "sqlite": SqliteMetadataRepo}
    assert selector.providers[backend].provides is factories[backend]
    for name, provider in selector.providers.items():  # nothing is connected to
        provider.override(providers.Object(f"<{name} store>"))
    assert container.metadata_repo() == f"<{backend} store>"
    selector.providers[backend].reset_last_overriding()
    if backend == "postgres":
        assert selector.providers["postgres"].kwargs["dsn"]() == PG
    else:  # these two open nothing remote when built: build the real adapter
        built = container.metadata_repo()
        expected = SupabaseMetadataRepo if backend == "supabase" else SqliteMetadataRepo
        assert isinstance(built, expected)
        if backend == "sqlite":
            assert Path(settings.sqlite_path) == tmp_path / "home" / "training-agent.sqlite3"


@pytest.mark.parametrize("env, store, adapter", [
    ({"MODEL_STORE_URL": "s3://models/team/", "GCP_BUCKET_NAME": "seed-bucket"},
     "s3://models/team", S3BlobStore),  # MODEL_STORE_URL wins over the bucket
    ({"MODEL_STORE_URL": "gs://models/team", "GCP_BUCKET_NAME": "seed-bucket"},
     "gs://models/team", GcsBlobStore),
    ({"GCP_BUCKET_NAME": "seed-bucket"}, "gs://seed-bucket", GcsBlobStore),
    ({}, "LOCAL", LocalBlobStore),
], ids=["model-store-url-s3", "model-store-url-gs", "gcp-bucket", "nothing"])
def test_model_store_precedence(monkeypatch, tmp_path, env, store, adapter):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    if store == "LOCAL":
        store = (tmp_path / "home" / "store").as_uri()
    settings = Settings()
    assert settings.model_store == store
    container = build_container(settings)
    container.metadata_repo.override(providers.Object(InMemoryMetadataRepo()))
    service = container.training_service()
    assert service.model_store_url == store
    assert isinstance(service.blobs.store_for(f"{store}/models/p/j/model.pth"), adapter)
    # a dataset URL is read by the store its scheme names, whatever the model store is
    assert isinstance(service.blobs.store_for("https://storage.googleapis.com/b/k.zip"),
                      GcsBlobStore)
    assert isinstance(service.blobs.store_for("s3://b/k.zip"), S3BlobStore)
    assert isinstance(service.blobs.store_for("file:///data/k.zip"), LocalBlobStore)


def test_the_trainer_settings_reach_the_adapters_through_the_container(monkeypatch, tmp_path):
    from training_agent.adapters.trainers import environment
    from training_agent.adapters.trainers.data import default_cache_budget
    from training_agent.adapters.trainers.weights import offline_requested

    for name, value in {"TRAINING_AGENT_PLUGINS": " torchvision, timm ", "HF_HUB_OFFLINE": "yes",
                        "TRAINING_AGENT_CACHE_GB": "0.5", "XDG_CACHE_HOME": str(tmp_path),
                        "WORLD_SIZE": "4", "LOCAL_RANK": "3", "TRAINING_AGENT_OVERLAP": "1",
                        "TRAINING_AGENT_STREAM_CPU_SHARE": "0.25",
                        "TRAINING_AGENT_DISK_CACHE_GB": "2"}.items():
        monkeypatch.setenv(name, value)
    build_container(Settings())
    env = environment.current()
    assert env.plugins == ("torchvision", "timm") and env.cache_home == tmp_path
    assert env.overlap is True and env.stream_cpu_share == 0.25 and env.disk_cache_gb == 2.0
    assert (env.world_size, env.local_rank, env.local_world_size) == (4, 3, None)
    assert offline_requested() and default_cache_budget() == 1 << 29
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRAINING_AGENT_OVERLAP")
    monkeypatch.delenv("TRAINING_AGENT_STREAM_CPU_SHARE")
    build_container(Settings())
    assert not offline_requested()
    # unset: the overlap where the job trains on CUDA, the streamed CPU share balanced
    assert environment.current().overlap is None
    assert environment.current().stream_cpu_share is None


def test_a_bad_trainer_setting_is_named():
    with pytest.raises(ValidationError) as err:
        Settings(TRAINING_AGENT_CACHE_GB="lots")
    assert "TRAINING_AGENT_CACHE_GB" in describe_settings_error(err.value)
    with pytest.raises(ValidationError) as err:
        Settings(TRAINING_AGENT_STREAM_CPU_SHARE="1.5")  # a fraction of each batch
    assert "TRAINING_AGENT_STREAM_CPU_SHARE" in describe_settings_error(err.value)
    with pytest.raises(ValidationError) as err:
        Settings(TRAINING_AGENT_DISK_CACHE_GB="-1")
    assert "TRAINING_AGENT_DISK_CACHE_GB" in describe_settings_error(err.value)


def test_no_adapter_reads_the_environment():
    """Settings enter through the container only (entrypoints/settings.py reads them)."""
    import training_agent.adapters as adapters

    root = Path(adapters.__file__).parent
    readers = [str(p.relative_to(root)) for p in root.rglob("*.py")
               if "os.environ" in p.read_text() or "getenv(" in p.read_text()]
    assert readers == []
