"""The one composition root: the only module that chooses concrete adapters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dependency_injector import containers, providers

from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.blobstore.router import BlobStoreRouter
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.log import LogNotifier
from training_agent.adapters.notifiers.webhook import WebhookNotifier
from training_agent.adapters.trainers import environment
from training_agent.adapters.trainers.lazy import LazyTrainer
from training_agent.adapters.trainers.registry import default_registry
from training_agent.domain.archive import IntakeLimits
from training_agent.domain.errors import TrainingAgentError
from training_agent.domain.ports import BlobStore, MetadataRepo, Trainer
from training_agent.domain.service import TrainingService

from .settings import Settings, trainer_environment


def _pytorch_trainer() -> Trainer:
    # imported on first use: torch is heavy and the HTTP app must start without it
    from training_agent.adapters.trainers.pytorch import PyTorchTrainer

    return PyTorchTrainer()


class MissingExtra(TrainingAgentError):
    """A configured backend whose optional dependencies (a package extra) are not installed."""


@contextmanager
def _needs_extra(extra: str, what: str) -> Iterator[None]:
    """Turns the adapter's failed import into one line naming the extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("training_agent"):
            raise  # our own module missing is a broken install, not a missing extra
        raise MissingExtra(
            f"{what} needs the '{extra}' extra, and {exc.name or 'one of its modules'} is not "
            f"installed: pip install 'training-agent[{extra}]'") from exc


# The cloud adapters are imported when chosen: each needs its extra (postgres, supabase, gcs, s3).
def _postgres_repo(dsn: str) -> MetadataRepo:
    with _needs_extra("postgres", "DATABASE_URL is set: the Postgres metadata store"):
        from training_agent.adapters.metadata.postgres import PostgresMetadataRepo

    return PostgresMetadataRepo(dsn)


def _supabase_repo(url: str, key: str) -> MetadataRepo:
    with _needs_extra("supabase", "SUPABASE_URL and SUPABASE_KEY are set: the Supabase "
                                  "metadata store"):
        from training_agent.adapters.metadata.supabase import SupabaseMetadataRepo

    return SupabaseMetadataRepo(url, key)


def _gcs_store(credentials_file: str | None, emulator_host: str | None) -> BlobStore:
    with _needs_extra("gcs", "Google Cloud Storage (gs:// URLs)"):
        from training_agent.adapters.blobstore.gcs import GcsBlobStore

    return GcsBlobStore(credentials_file=credentials_file, emulator_host=emulator_host)


def _s3_store(endpoint_url: str | None) -> BlobStore:
    with _needs_extra("s3", "S3 (s3:// URLs)"):
        from training_agent.adapters.blobstore.s3 import S3BlobStore

    return S3BlobStore(endpoint_url=endpoint_url)


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    metadata_repo = providers.Selector(
        config.metadata_backend,
        sqlite=providers.Singleton(SqliteMetadataRepo, path=config.sqlite_path.as_(Path)),
        postgres=providers.Singleton(_postgres_repo, dsn=config.database_url),
        supabase=providers.Singleton(_supabase_repo, url=config.supabase_url,
                                     key=config.supabase_key),
    )

    # `db migrate`: the SQL stores apply their shipped migrations; Supabase cannot (None)
    schema_migrator = providers.Selector(
        config.metadata_backend,
        sqlite=providers.Callable(getattr, metadata_repo, "migrate"),
        postgres=providers.Callable(getattr, metadata_repo, "migrate"),
        supabase=providers.Object(None),
    )

    blob_store = providers.Singleton(
        BlobStoreRouter,
        stores=providers.Dict(
            file=providers.Factory(LocalBlobStore).provider,
            gs=providers.Factory(
                _gcs_store, credentials_file=config.google_application_credentials.required(),
                emulator_host=config.storage_emulator_host.required()).provider,
            s3=providers.Factory(_s3_store,
                                 endpoint_url=config.s3_endpoint_url.required()).provider,
        ),
    )

    trainer = providers.Singleton(LazyTrainer, factory=providers.Object(_pytorch_trainer),
                                  registry=providers.Object(default_registry))

    notifier = providers.Selector(
        config.notifier_kind,
        log=providers.Singleton(LogNotifier),
        webhook=providers.Singleton(WebhookNotifier, url=config.notify_webhook_url),
    )

    intake_limits = providers.Factory(
        IntakeLimits,
        max_members=config.max_dataset_members.as_int(),
        max_total_bytes=config.max_dataset_bytes.as_int(),
    )

    training_service = providers.Singleton(
        TrainingService,
        repo=metadata_repo,
        blobs=blob_store,
        trainer=trainer,
        notifier=notifier,
        model_store_url=config.model_store,
        work_root=config.work_root.as_(Path),
        limits=intake_limits,
    )


def build_container(settings: Settings | None = None) -> Container:
    settings = settings or Settings()
    # what the trainer adapters and plugins need of the settings, handed on once per process
    environment.configure(**trainer_environment(settings))
    container = Container()
    container.config.from_pydantic(settings)
    return container
