"""The one table that maps domain errors to HTTP responses; handlers never catch them."""

from __future__ import annotations

from litestar import MediaType, Request, Response
from litestar.exceptions import ValidationException
from litestar.types import ExceptionHandlersMap

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


def error_response(status_code: int, detail: str, extra: object = None) -> Response[ErrorBody]:
    body = ErrorBody(status_code=status_code, detail=redact_text(detail),
                     extra=extra if isinstance(extra, (dict, list)) else None)
    return Response(body, status_code=status_code, media_type=MediaType.JSON)


def _handler(status_code: int):  # type: ignore[no-untyped-def]
    def handle(_: Request, exc: Exception) -> Response[ErrorBody]:
        detail = exc.detail if isinstance(exc, ValidationException) else str(exc)
        return error_response(status_code, detail, getattr(exc, "extra", None))

    return handle


EXCEPTION_HANDLERS: ExceptionHandlersMap = {exc: _handler(code) for exc, code in STATUS_OF.items()}
