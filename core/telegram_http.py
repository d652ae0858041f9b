"""The HTTP under python-telegram-bot's `Bot`: aiohttp in place of PTB's default httpx.

The `Bot` stays the Bot API client (its methods, its parsing of Telegram's answers, its errors and
its handling of 429's retry_after); only the request under it changes, through PTB's own
`BaseRequest` extension point. Why: against the local Telegram fake, a request costs 0.20 ms of
CPU through aiohttp and 0.65 ms through httpx, and a tapped button makes two (its answer and the
reply), which is most of what a worker spends on a tap outside the database (bench/report.md,
section 2).

As with httpx, a POST is never retried by the client: a request that may have reached Telegram is
reported as failed, and the outbox decides (it knows whether the message may go again).
"""

from __future__ import annotations

import ssl

import aiohttp
import certifi
from aiohttp.helpers import get_env_proxy_for_url
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL


class AiohttpRequest(BaseRequest):
    """PTB's request interface over one `aiohttp.ClientSession`, created on first use inside the
    event loop that runs the calls (a session belongs to its loop).

    Timeouts as PTB means them: `connect_timeout` to open a connection, `pool_timeout` to wait for a
    free one (aiohttp counts both in its `connect`), `read_timeout` between two reads of the answer.
    aiohttp has no write timeout of its own, so the whole request is also bounded by the sum of all
    four: an upload that stalls fails then instead of hanging its task."""

    def __init__(self, *, connection_pool_size: int = 16, connect_timeout: float | None = 5.0,
                 read_timeout: float | None = 5.0, write_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0) -> None:
        self._pool_size = connection_pool_size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, tuple[str | None, aiohttp.BasicAuth | None]] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        self._open_session()

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # certifi's CA bundle and the proxy from the environment (HTTPS_PROXY), as httpx did:
                # a slim image without the system's CA certificates still reaches api.telegram.org.
                # (Built here, once per session, not at import: loading the bundle takes ~18 ms.)
                connector=aiohttp.TCPConnector(limit=self._pool_size,
                                               ssl=ssl.create_default_context(cafile=certifi.where())),
                headers={"User-Agent": self.USER_AGENT},
            )
            self._proxies = {}
        return self._session

    def _proxy_for(self, url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
        """The environment's proxy for `url`'s origin (HTTPS_PROXY, NO_PROXY), looked up once per
        origin and session. aiohttp's `trust_env` looked it up on every request, reading the
        environment and ~/.netrc each time: 4 % of a flash sale's worker CPU (bench/report.md)."""
        origin = url[:url.find("/", url.find("//") + 2)] if url.count("/") > 2 else url
        if origin not in self._proxies:
            try:
                proxy, auth = get_env_proxy_for_url(URL(origin))
                self._proxies[origin] = (str(proxy), auth)
            except LookupError:  # none set for it, or NO_PROXY names it
                self._proxies[origin] = (None, None)
        return self._proxies[origin]

    async def do_request(  # noqa: PLR0917 - BaseRequest's signature, which PTB defines
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        files = request_data.multipart_data if request_data else None
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        write = _given(write_timeout, self._media_write_timeout if files else self._write_timeout)
        stages = (pool, connect, write, read)
        timeout = aiohttp.ClientTimeout(
            total=None if None in stages else sum(stage or 0.0 for stage in stages),
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | bytes | None = None
        headers = None
        if request_data is not None and files:
            form = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():  # JSON-encodes each one
                form.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            data = form
        elif request_data is not None:
            # The parameters as one JSON body, which the Bot API takes as it takes form fields: one
            # encoding, where a form JSON-encoded each value and then URL-encoded it (5 % of a
            # flash sale's worker CPU, bench/report.md).
            data, headers = request_data.json_payload, _JSON_BODY
        try:
            session = self._open_session()
            proxy, proxy_auth = self._proxy_for(url)
            async with session.request(method, url, data=data, headers=headers, timeout=timeout, proxy=proxy,
                                       proxy_auth=proxy_auth) as response:
                return response.status, await response.read()
        except TimeoutError as error:  # aiohttp's own timeouts are TimeoutErrors too
            raise TimedOut from error
        except (aiohttp.ClientError, OSError) as error:
            # The class's name in the message: some of aiohttp's errors have an empty text.
            raise NetworkError(f"aiohttp.{error.__class__.__name__}: {error}") from error


_JSON_BODY = {"Content-Type": "application/json"}


def _given(timeout: object, default: float | None) -> float | None:
    """A timeout PTB passed: seconds, None for none, or PTB's marker for "this request's default"."""
    if timeout is None or isinstance(timeout, int | float):
        return timeout
    return default  # BaseRequest.DEFAULT_NONE
