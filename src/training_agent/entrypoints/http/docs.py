"""The API docs page at /schema: Swagger UI served from files shipped in this package, so that
it works with no network (Litestar's render plugins load their JavaScript from a CDN)."""

from __future__ import annotations

from pathlib import Path

from litestar import Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import File

SWAGGER_UI_VERSION = "5.35.0"  # swagger_ui/README.md says how to update it
ASSETS = Path(__file__).with_name("swagger_ui")
SERVED = {  # file -> media type; nothing else in the folder is served
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSETS_PATH = "/assets"  # under the OpenAPI router's path (/schema)


class OfflineSwaggerUI(SwaggerRenderPlugin):
    """Swagger UI at `{schema_path}` and `{schema_path}/swagger`, its assets at
    `{schema_path}/assets/...`."""

    def __init__(self, schema_path: str = "/schema") -> None:
        base = f"{schema_path.rstrip('/')}{ASSETS_PATH}"
        super().__init__(
            path=["/", "/swagger"], js_url=f"{base}/swagger-ui-bundle.js",
            css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>")

    def receive_router(self, router: Router) -> None:
        router.register(swagger_ui_asset)


@get(f"{ASSETS_PATH}/{{name:str}}", sync_to_thread=False, include_in_schema=False,
     cache=3600)
def swagger_ui_asset(name: str) -> File:
    if name not in SERVED:
        raise NotFoundException(f"no docs asset {name!r}")
    return File(ASSETS / name, media_type=SERVED[name], content_disposition_type="inline")
