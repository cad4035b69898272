"""The Litestar application: routes, dependencies from the container, errors, auth, OpenAPI."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

from litestar import Litestar
from litestar.concurrency import get_asyncio_executor, set_asyncio_executor
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPIResponse

from training_agent import __version__
from training_agent.domain.service import TrainingService

from ..container import Container
from ..worker.runner import JobRunner
from .auth import SECURITY_SCHEMES
from .controllers import TrainingController, health
from .docs import OfflineSwaggerUI
from .errors import EXCEPTION_HANDLERS, log_exception
from .health import Check, default_checks
from .openapi import document_config
from .request import MAX_BODY_BYTES, AgentRequest

log = logging.getLogger("training_agent.http")

# threads for the synchronous handlers (each holds one while it waits on the metadata store);
# asyncio's default, min(32, CPUs + 4), is 6 on a 2-core machine
HANDLER_THREADS = 32


def create_app(container: Container, runner: JobRunner, *, api_key: str | None = None,
               checks: dict[str, Check] | None = None, manage_runner: bool = True) -> Litestar:
    """`manage_runner`: start the runner with the app and stop it (and its workers) after."""
    if get_asyncio_executor() is None:
        set_asyncio_executor(ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="http"))
    service = container.training_service()
    health_checks = checks if checks is not None else default_checks(
        container.metadata_repo(), container.blob_store(), container.config.model_store(), runner)

    def provide_service() -> TrainingService:
        return service

    def provide_runner() -> JobRunner:
        return runner

    def provide_checks() -> dict[str, Check]:
        return health_checks

    def start_runner() -> None:
        runner.start()

    def stop_runner() -> None:
        runner.stop()

    def warn_if_open() -> None:
        if not api_key:
            log.warning("MCP_API_KEY is not set: /agents/* accepts requests without a key; "
                        "set it before exposing this port")

    app = Litestar(
        route_handlers=[TrainingController, health],
        dependencies={
            "service": Provide(provide_service, sync_to_thread=False),
            "runner": Provide(provide_runner, sync_to_thread=False),
            "health_checks": Provide(provide_checks, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=AgentRequest,
        request_max_body_size=MAX_BODY_BYTES,  # 413 beyond it
        # the CLI configures the root logger; Litestar logs errors through it: a client error
        # as one line, a server error with its traceback (errors.log_exception)
        logging_config=LoggingConfig(
            configure_root_logger=False, log_exceptions="always",
            exception_logging_handler=log_exception,
            loggers={"litestar": {"level": "INFO", "handlers": [], "propagate": True}}),
        state=State({"api_key": api_key or None}),
        on_startup=[warn_if_open, *([start_runner] if manage_runner else [])],
        on_shutdown=[stop_runner] if manage_runner else [],
        openapi_config=OpenAPIConfig(
            title="training-agent", version=__version__, path="/schema",
            render_plugins=[OfflineSwaggerUI("/schema")],  # works offline: assets shipped
            description="Turns a project's image dataset into a trained, recorded PyTorch model.",
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
    )
    _document_validation_as_422(app)
    document_config(app, {"StartRequest": "config"})
    return app


def _document_validation_as_422(app: Litestar) -> None:
    """Litestar documents a generic 400 for every handler with parameters; ours answer 422 for
    invalid input (errors.py), and only a body that is not JSON at all is a 400 (start)."""
    generic = HTTPStatus.BAD_REQUEST.description
    for item in (app.openapi_schema.paths or {}).values():
        for op in (item.get, item.post):
            bad = op.responses.get("400") if op is not None and op.responses else None
            if isinstance(bad, OpenAPIResponse) and bad.description == generic:
                del op.responses["400"]  # type: ignore[union-attr]
