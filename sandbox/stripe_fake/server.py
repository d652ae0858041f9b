"""StripeFake: the fake served by uvicorn on a background thread, for tests and scripts."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

import uvicorn

from .app import create_app
from .client import StripeFakeClient
from .state import FakeState, WebhookConfig, new_webhook_secret


class StripeFake(StripeFakeClient):
    """with StripeFake(webhook_url=...) as fake: stripe.api_base = fake.url; ...

    Port 0 picks a free port. The control-API helpers (pay, add_fault, configure_webhook,
    deliveries, reset, ...) come from StripeFakeClient.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        public_url: str | None = None,
    ) -> None:
        super().__init__("")
        self.host = host
        self.port = port
        webhook = None
        if webhook_url:
            webhook = WebhookConfig(url=webhook_url, secret=webhook_secret or new_webhook_secret())
        self.state = FakeState(api_key=api_key, webhook=webhook)
        self._public_url = public_url
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("StripeFake is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        # Bind first so the port is known (and connections queue) before uvicorn runs.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
        # every keep-alive request waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        app = create_app(self.state, public_url=self._public_url, on_ready=ready.set)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", loop="asyncio", timeout_graceful_shutdown=1
        )
        self._socket, self._server = sock, uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="stripe-fake-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout=15):
            self.stop()
            raise RuntimeError("StripeFake did not start within 15 s")
        self._base_url = self.url
        return self

    def stop(self) -> None:
        self.close()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
