"""Running the fake: in a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import uvicorn

from .app import create_app
from .client import TelegramFakeClient
from .delivery import RetryPolicy
from .state import DEFAULT_TOKEN, SandboxState
from .web import WebConfig

if TYPE_CHECKING:
    import telegram

logger = logging.getLogger("sandbox.telegram_fake")

STARTUP_TIMEOUT_SECONDS = 10.0


def _bind(host: str, port: int) -> socket.socket:
    # Binding ourselves makes port 0 usable: the real port is known before uvicorn starts.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _server_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)


class _Server(uvicorn.Server):
    """uvicorn server that ends the sandbox's long polls and SSE streams as shutdown begins,
    instead of letting them hold the graceful-shutdown period."""

    def __init__(self, config: uvicorn.Config, state: SandboxState):
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._state.close()
        super().handle_exit(sig, frame)


class TelegramFake:
    """A local Telegram Bot API stand-in served by uvicorn on a background thread.

    >>> with TelegramFake() as fake:
    ...     bot = telegram.Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url)
    """

    def __init__(
        self,
        tokens: Sequence[str] = (DEFAULT_TOKEN,),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_retry_initial: float = 0.2,
        webhook_retry_max: float = 5.0,
        webhook_timeout: float = 10.0,
        web: WebConfig | None = None,
        files_dir: str | Path | None = None,
    ):
        """``files_dir``: keep uploaded files there, so a new fake on the same directory still
        knows their file_ids (a restart); None keeps them in memory."""
        self.tokens = list(tokens)
        self._web = web
        self.state = SandboxState(self.tokens, files_dir=files_dir)
        self._host = host
        self._requested_port = port
        self._retry = RetryPolicy(webhook_retry_initial, webhook_retry_max)
        self._webhook_timeout = webhook_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("TelegramFake is already running")
        sock = _bind(self._host, self._requested_port)
        self._port = sock.getsockname()[1]
        self.state.closing = False
        ready = threading.Event()
        app = create_app(
            self.state, retry=self._retry, webhook_timeout=self._webhook_timeout, on_ready=ready.set, web=self._web
        )
        self._server = _Server(_server_config(app), self.state)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="telegram-fake", daemon=True
        )
        self._thread.start()
        if not ready.wait(STARTUP_TIMEOUT_SECONDS):
            self.stop()
            raise RuntimeError("TelegramFake did not start")
        logger.info("Telegram fake listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is None or self._server is None:
            return
        # Answer open long polls and end SSE streams first, so uvicorn has nothing to wait for.
        self.state.close()
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        self._thread = self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("TelegramFake is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """For ``telegram.Bot(base_url=...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``telegram.Bot(base_file_url=...)``."""
        return f"{self.url}/file/bot"

    @property
    def token(self) -> str:
        return self.tokens[0]

    @property
    def bot_id(self) -> int:
        return self.state.default_bot.id

    # ------------------------------------------------------------------ conveniences

    def client(self, **kwargs: Any) -> TelegramFakeClient:
        return TelegramFakeClient(self.url, **kwargs)

    def make_bot(self, token: str | None = None, **kwargs: Any) -> telegram.Bot:
        """A python-telegram-bot ``Bot`` pointed at this fake."""
        # Imported lazily: the fake itself does not depend on the library (nor pay for its import).
        import telegram  # noqa: PLC0415

        return telegram.Bot(
            token or self.token, base_url=self.base_url, base_file_url=self.base_file_url, **kwargs
        )

    def reset(self) -> None:
        self.state.reset()

    def wait_for_reply(
        self,
        chat_id: int,
        after_message_id: int | None = None,
        timeout: float = 5.0,
        *,
        after_seq: int | None = None,
        bot_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """In-process twin of the ``/_sandbox/wait`` endpoint; raises TimeoutError."""
        bot = self.state.get_bot(bot_id)
        if after_seq is None:
            after_seq = (
                self.state.seq_of_message(bot, chat_id, after_message_id)
                if after_message_id is not None
                else self.state.feed.version
            )
        threshold = after_seq
        messages = self.state.feed.wait_for_sync(
            lambda: self.state.bot_changes_since(bot, chat_id, threshold), timeout
        )
        if not messages:
            raise TimeoutError(f"the bot did not write to chat {chat_id} within {timeout}s")
        return messages


def serve_forever(
    tokens: Sequence[str],
    *,
    host: str,
    port: int,
    webhook_retry_initial: float = 0.2,
    webhook_retry_max: float = 5.0,
    webhook_timeout: float = 10.0,
    web: WebConfig | None = None,
    files_dir: str | Path | None = None,
) -> None:
    """Run in the foreground until interrupted (used by ``python -m sandbox.telegram_fake``)."""
    state = SandboxState(tokens, files_dir=files_dir)
    sock = _bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"

    def announce() -> None:
        logger.info("Telegram fake listening on %s (control API: %s/_sandbox/, web chat: %s/)", url, url, url)
        for bot in state.bots.values():
            tokens_text = ", ".join(sorted(bot.tokens))
            logger.info("bot @%s (id %d), tokens: %s", bot.identity.username, bot.id, tokens_text)

    app = create_app(
        state,
        retry=RetryPolicy(webhook_retry_initial, webhook_retry_max),
        webhook_timeout=webhook_timeout,
        on_ready=announce,
        web=web,
    )
    _Server(_server_config(app), state).run(sockets=[sock])
