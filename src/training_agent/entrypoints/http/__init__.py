"""The HTTP API (Litestar): start, status and cancel training; health; OpenAPI at /schema."""

from .app import create_app

__all__ = ["create_app"]
