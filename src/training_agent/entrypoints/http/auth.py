"""`MCP_API_KEY` authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.spec import Reference, SecurityScheme

SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "BearerKey": SecurityScheme(type="http", scheme="bearer",
                                description="the agent's MCP_API_KEY as a bearer token"),
    "HeaderKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header",
                                description="the agent's MCP_API_KEY"),
}
SECURITY: list[dict[str, list[str]]] = [{"BearerKey": []}, {"HeaderKey": []}]


def supplied_keys(connection: ASGIConnection) -> list[str]:
    keys = []
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if header := connection.headers.get("x-api-key", "").strip():
        keys.append(header)
    return keys


def key_matches(supplied: str, expected: str) -> bool:
    return hmac.compare_digest(supplied.encode(), expected.encode())


async def require_api_key(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard of every /agents/* route; open when no key is configured (with a startup warning).

    Async on purpose: it runs on the event loop, so a 401 never waits for a worker thread
    (which a slow metadata store can keep busy) and never touches the store."""
    expected: str | None = connection.app.state.api_key
    if not expected:
        return
    if not any(key_matches(k, expected) for k in supplied_keys(connection)):
        raise NotAuthorizedException("a valid API key is required (Authorization: Bearer <key> "
                                     "or X-API-Key: <key>)",
                                     headers={"WWW-Authenticate": "Bearer"})
