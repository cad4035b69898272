"""The one composition root: the only module that chooses concrete adapters."""

from __future__ import annotations

from pathlib import Path

from dependency_injector import containers, providers

from training_agent.adapters.blobstore.local import LocalBlobStore
from training_agent.adapters.blobstore.router import BlobStoreRouter
from training_agent.adapters.metadata.memory import InMemoryMetadataRepo
from training_agent.adapters.metadata.sqlite import SqliteMetadataRepo
from training_agent.adapters.notifiers.log import LogNotifier
from training_agent.adapters.notifiers.webhook import WebhookNotifier
from training_agent.adapters.trainers.lazy import LazyTrainer
from training_agent.domain.archive import IntakeLimits
from training_agent.domain.ports import Trainer
from training_agent.domain.service import TrainingService

from .settings import Settings


def _pytorch_trainer() -> Trainer:
    # imported on first use: torch is heavy and the HTTP app must start without it
    from training_agent.adapters.trainers.pytorch import PyTorchTrainer

    return PyTorchTrainer()


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    metadata_repo = providers.Selector(
        config.metadata_backend,
        sqlite=providers.Singleton(SqliteMetadataRepo, path=config.sqlite_path.as_(Path)),
        memory=providers.Singleton(InMemoryMetadataRepo),
    )

    blob_store = providers.Singleton(
        BlobStoreRouter,
        stores=providers.Dict(file=providers.Factory(LocalBlobStore).provider),
    )

    trainer = providers.Singleton(LazyTrainer, factory=providers.Object(_pytorch_trainer))

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
    container = Container()
    container.config.from_pydantic(settings or Settings())
    return container
