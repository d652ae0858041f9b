"""The Bot over aiohttp (core/telegram_http.py) against the Telegram fake and against servers that
fail the way networks do: what reaches Telegram, and which of PTB's errors a failure becomes (the
outbox and the tasks' retries decide on those errors)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import telegram
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from core.telegram import TelegramApi, retry_after_seconds
from core.telegram_http import AiohttpRequest
from sandbox.telegram_fake import TelegramFake

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    # PTB reads RetryAfter.retry_after while building the exception, and core/telegram.py's generic
    # `call` is do_api_request by design (one code path for every method); both only warn.
    pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Please use 'Bot:telegram.warnings.PTBUserWarning"),
]


@pytest.fixture
def fake() -> Iterator[TelegramFake]:
    with TelegramFake() as running:
        yield running


@pytest.fixture
def api(fake: TelegramFake) -> Iterator[TelegramApi]:
    client = TelegramApi(fake.token, fake.url)
    yield client
    client.close()


def test_messages_buttons_and_uploads_reach_telegram_as_sent(fake: TelegramFake, api: TelegramApi) -> None:
    with fake.client() as people:
        user = people.create_user(4101, "Ada", language_code="de")["id"]
        keyboard = [[{"text": "🛒 Reserve", "callback_data": "r:1"}]]
        sent = api.send_message(user, "Grüße <b>aus</b> der Bäckerei", keyboard)
        document = b"\x00\x01 binary \xff" * 1000
        uploaded = api.send_document(user, "pickups.csv", document, caption="März")
        messages = people.messages(user)

    text = next(m for m in messages if m["message_id"] == sent.message_id)
    assert text["text"] == "Grüße aus der Bäckerei"  # HTML parsed, entities apart
    assert text["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "r:1"
    assert uploaded.document is not None and uploaded.document.file_name == "pickups.csv"
    assert uploaded.caption == "März"
    assert api.download_file(uploaded.document.file_id) == document  # multipart carried every byte


def test_telegrams_refusals_are_ptbs_errors(fake: TelegramFake, api: TelegramApi) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        api.send_message(987654321, "nobody here")
    with fake.client() as people:
        user = people.create_user(4102, "Bo")["id"]
        people.set_fault("sendMessage", retry_after=7)
        people.set_fault("sendMessage", status=502)
    with pytest.raises(RetryAfter) as refused:
        api.send_message(user, "too fast")
    assert retry_after_seconds(refused.value) == 7
    with pytest.raises(NetworkError, match="Bad Gateway"):
        api.send_message(user, "through a broken proxy")
    assert api.send_message(user, "and then through").message_id > 0


def test_nobody_listening_is_a_network_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = TelegramApi("123456:TOKEN", f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(NetworkError) as failed:
            client.call("getMe")
        assert not isinstance(failed.value, TimedOut)
        assert "aiohttp." in str(failed.value)  # the cause's class named, even when its text is empty
    finally:
        client.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections, reads, never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


def test_a_server_that_never_answers_times_out_after_the_read_timeout(silent_server: int) -> None:
    async def scenario() -> float:
        bot = telegram.Bot("123456:TOKEN", base_url=f"http://127.0.0.1:{silent_server}/bot",
                           request=AiohttpRequest(read_timeout=0.5, connect_timeout=1.0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(TimedOut):
                await bot.get_me()
            return loop.time() - started
        finally:
            await bot.shutdown()

    waited = asyncio.run(scenario())
    assert 0.4 < waited < 5, waited  # the read timeout, not the default 5 s connect + 5 s read


CLIENT_IN_A_SCRIPT = """
import gc, os, sys
from core.settings import get_settings
from core.telegram import TelegramApi, telegram_api
closed = TelegramApi(get_settings().telegram_token, os.environ["TELEGRAM_API_URL"])
closed.call("getMe")
closed.close()  # as a tool or a test does when it is done with its own client
del closed
gc.collect()
telegram_api().call("getMe")
child = os.fork()
if child == 0:  # a forked child: its own client, the parent's copy left alone
    telegram_api().call("getMe")
    gc.collect()
    sys.exit(0)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_process_that_used_the_client_exits_without_leaving_a_session_open(fake: TelegramFake) -> None:
    """aiohttp logs "Unclosed client session" for a session collected open: `close()` closes it,
    each process closes its own client at exit, and a fork's copy of its parent's is never collected."""
    done = subprocess.run([sys.executable, "-c", CLIENT_IN_A_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "TELEGRAM_API_URL": fake.url, "PYTHONPATH": str(ROOT)},
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr


class _Proxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that answers every Bot API call itself, remembering the URL it was asked for."""

    asked: list[str] = []  # noqa: RUF012 - the test's record, reset by it

    def do_POST(self) -> None:
        self.asked.append(self.path)  # a proxy is asked for the absolute URL
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Proxied",
                                                   "username": "proxied_bot"}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        return


def test_the_environments_proxy_carries_the_calls_unless_no_proxy_names_the_host(monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Proxy.asked = []
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = TelegramApi("123456:TOKEN", "http://telegram.invalid")  # resolvable through the proxy only
    try:
        assert client.call("getMe")["first_name"] == "Proxied"
        assert client.call("getMe")["first_name"] == "Proxied"  # the proxy looked up once, used again
        assert _Proxy.asked == ["http://telegram.invalid/bot123456:TOKEN/getMe"] * 2
    finally:
        client.close()
    monkeypatch.setenv("NO_PROXY", "telegram.invalid")
    direct = TelegramApi("123456:TOKEN", "http://telegram.invalid")
    try:
        with pytest.raises(NetworkError):  # straight to a host that does not exist
            direct.call("getMe")
    finally:
        direct.close()
        server.shutdown()
    assert len(_Proxy.asked) == 2
