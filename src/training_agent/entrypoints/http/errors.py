"""The one table that maps domain errors to HTTP responses; handlers never catch them.

Client errors (4xx) are logged as one line (INFO; WARNING for 401/403), never as an uncaught
exception with a traceback: anyone can send them, and each would otherwise write kilobytes. A
503 because the metadata store is unreachable is one WARNING line too (an outage is not a bug,
and every request during one would otherwise log a traceback)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap, Scope

from training_agent.domain.errors import Conflict, InvalidInput, MetadataError, NotFound
from training_agent.domain.urls import redact_text

from .schemas import ErrorBody

STATUS_OF: dict[type[Exception], int] = {
    NotFound: 404,  # project, dataset or job
    Conflict: 409,  # an active job, or a status that may not start
    InvalidInput: 422,  # bad id, unknown or out-of-range config key (InvalidConfig)
    ValidationException: 422,  # a body that does not match the request model
    MetadataError: 503,  # the metadata store is down
}
LOGGED_CHARS = 300  # of a path or a message in a client-error log line
DETAIL_CHARS = 2000  # of an error body's detail; ...and of a string in its `extra`: EXTRA_CHARS
EXTRA_CHARS = 200


def status_of(exc: BaseException) -> int:
    """The status the app answers `exc` with: the table first (most specific class), then an
    HTTPException's own code, else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return exc.status_code if isinstance(exc, HTTPException) else 500


def shorten(text: str, limit: int = LOGGED_CHARS) -> str:
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def log_exception(logger: Any, scope: Scope, _traceback: list[str]) -> None:
    """Litestar's `exception_logging_handler`, called while the exception is being handled."""
    exc = sys.exc_info()[1]
    path = shorten(str(scope.get("path", "")))
    status = status_of(exc) if exc is not None else 500
    if isinstance(exc, MetadataError):  # the store is away (a 503): known, one line each
        logger.warning("%s %s -> %d %s: %s", scope.get("method", scope.get("type")), path,
                       status, type(exc).__name__, shorten(str(exc)))
        return
    if status >= 500:
        logger.exception("Uncaught exception (connection_type=%s, path=%r):",
                         scope.get("type"), path)
        return
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    logger.log(logging.WARNING if status in (401, 403) else logging.INFO,
               "%s %s -> %d %s: %s", scope.get("method", scope.get("type")), path, status,
               type(exc).__name__, shorten(str(detail)))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _clipped(value: Any) -> Any:
    """`extra` (Litestar's validation details) with long strings cut: a hostile request's
    10 kB key or value is not echoed whole."""
    if isinstance(value, str):
        return clip(redact_text(value), EXTRA_CHARS)
    if isinstance(value, dict):
        return {_clipped(k): _clipped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clipped(v) for v in value]
    return value


def error_response(status_code: int, detail: str, extra: object = None) -> Response[ErrorBody]:
    body = ErrorBody(status_code=status_code, detail=clip(redact_text(detail), DETAIL_CHARS),
                     extra=_clipped(extra) if isinstance(extra, (dict, list)) else None)
    return Response(body, status_code=status_code, media_type=MediaType.JSON)


def _handler(status_code: int):  # type: ignore[no-untyped-def]
    def handle(_: Request, exc: Exception) -> Response[ErrorBody]:
        detail = exc.detail if isinstance(exc, ValidationException) else str(exc)
        return error_response(status_code, detail, getattr(exc, "extra", None))

    return handle


EXCEPTION_HANDLERS: ExceptionHandlersMap = {exc: _handler(code) for exc, code in STATUS_OF.items()}
