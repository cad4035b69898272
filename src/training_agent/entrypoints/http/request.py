"""The request class of the app: the JSON body's decoding hardened against hostile input."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import SerializationException

MAX_BODY_BYTES = 1024 * 1024  # a start body is a few hundred bytes; larger ones get a 413


class AgentRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        """A body nested deeper than the decoder's recursion limit (`{"a":` x 5000, `[` x
        100000) is a 400 like any other invalid body, not a RecursionError and a 500."""
        try:
            return await super().json()
        except RecursionError:
            raise SerializationException("the JSON body is nested too deeply") from None
