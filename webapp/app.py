"""The Mini App process: the app's static files and its /api (webapp/api.py).

Separate from the gateway, so the bot process still only acknowledges and enqueues. Run with
`python -m webapp`; it listens on WEBAPP_HOST:WEBAPP_PORT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import configure_logging, get_logger, init_error_reporting
from core.settings import Settings, get_settings
from models.entities import MAX_UPLOAD_BYTES
from webapp import api, openapi
from webapp.errors import error_response

log = get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The page may load only its own files; tiles come from MAP_TILE_URL's host, and nothing else.
_CSP = ("default-src 'self'; img-src 'self' data: blob: {tiles}; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors *")


def _tile_origin(tile_url: str | None) -> str:
    if not tile_url:
        return ""
    scheme, _, rest = tile_url.partition("://")
    host = rest.split("/", 1)[0].replace("{s}", "*")
    return f"{scheme}://{host}"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    document = openapi.document()
    csp = _CSP.format(tiles=_tile_origin(settings.map_tile_url))

    async def openapi_json(_request: Request) -> Response:
        return JSONResponse(document)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def unknown_api(request: Request) -> Response:
        return error_response("not_found", api.accept_language(request))

    routes: list[Route | Mount] = [
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *(Route(op.path, api.endpoint(settings, api.HANDLERS[op.handler],
                                      MAX_UPLOAD_BYTES if op.upload else api.MAX_BODY_BYTES), methods=[op.method])
          for op in openapi.OPERATIONS),
        Route("/api/{rest:path}", unknown_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Mount("/", StaticFiles(directory=STATIC, html=True), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, csp=csp)])


class SecurityHeaders:
    """Adds the page's content security policy (no script or connection leaves the app's origin;
    images only from it and the tile server) and, on /api, no caching unless the answer says."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.headers
                if is_api and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def serve() -> Starlette:
    """The app of one worker process (uvicorn's factory, imported in each process it starts), with
    logging and error reporting set up in that process."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_error_reporting(settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None)
    return create_app(settings)


def main() -> None:
    """WEBAPP_WORKERS processes answering on one socket (uvicorn's supervisor starts them and starts
    a dead one again); with 1, this process answers itself."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log.info("webapp_starting", host=settings.webapp_host, port=settings.webapp_port, url=settings.webapp_url,
             workers=settings.webapp_workers)
    options: dict[str, Any] = {"host": settings.webapp_host, "port": settings.webapp_port, "loop": "uvloop",
                               "http": "httptools", "access_log": False, "log_config": None, "server_header": False}
    if settings.webapp_workers == 1:
        uvicorn.run(serve(), **options)
    else:
        uvicorn.run("webapp.app:serve", factory=True, workers=settings.webapp_workers, **options)


if __name__ == "__main__":
    main()
