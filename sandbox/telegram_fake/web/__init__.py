"""The web chat: a page that looks and behaves like a Telegram client, served by the fake itself.

The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from the
internet) talks only to the public user-side API under ``/_sandbox/`` and its event stream, so
what it shows is what a real client would see. This module adds what the page needs around that:

* ``GET /`` (and ``/chat``): the page; ``/web/...``: its static files.
* ``GET /_sandbox/web/config``: the personas (stable ids), the Flower URL, preset places, and the
  time zone the page shows times in: the one the bot uses for the sandbox's businesses (Europe/Berlin
  unless ``TELEGRAM_FAKE_WEB_TIME_ZONE`` says otherwise), so "pay by 19:07" and the bubble agree.
* ``GET /_sandbox/web/tasks?chat_id=``: Flower's tasks for one chat, fetched server-side with the
  sandbox's Flower credentials (never sent to the browser). The update tasks are matched by the
  update ids this fake handed to the bot for the chat (Flower shows them as ``(update <id>)``),
  the tasks they started by Celery's ``root_id``.
* ``POST``/``GET /_sandbox/demo``: runs (or reports) the demo scenario of :mod:`sandbox.demo` in a
  background thread; the scenario itself drives the fake over HTTP like any user would.
* ``GET /_sandbox/web/qr_codes``: the camera of the Mini App panel's QR scanner (a Mini App's
  ``web_app_open_scan_qr_popup``): the QR codes in the photos the bots sent to any chat of the
  sandbox, newest first, each with the text it holds, read by a real decoder (zxing-cpp, which
  ``make run`` installs with the development requirements). Picking one is holding the phone up to
  another phone showing it, e.g. a customer's pickup pass.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..api_bot import json_response
from ..state import SandboxState

logger = logging.getLogger("sandbox.telegram_fake.web")

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_ADMIN_ID = 4242
# The businesses' default zone (models.Business.timezone), in which the bot writes times.
DEFAULT_TIME_ZONE = "Europe/Berlin"
FLOWER_TIMEOUT_SECONDS = 3.0
FLOWER_TASK_LIMIT = 1000
# A task's argsrepr as the gateway writes it: "(update 10)" for one, "(updates 10, 11, 12)" for several.
_UPDATE_ARGS = re.compile(r"\(updates? ([\d, ]+)\)")
QR_PHOTOS_LOOKED_AT = 40  # the newest photos of the bots' messages the scanner's list looks at

# Real places, so "near me" means something: the demo bakery sits at Berlin Mitte.
PLACES = [
    {"name": "Berlin Mitte (Rotes Rathaus)", "latitude": 52.5186, "longitude": 13.4081},
    {"name": "Berlin Alexanderplatz", "latitude": 52.5219, "longitude": 13.4132},
    {"name": "Berlin Kreuzberg (Oranienstraße)", "latitude": 52.5010, "longitude": 13.4190},
    {"name": "Munich Marienplatz", "latitude": 48.1372, "longitude": 11.5756},
    {"name": "Hamburg Rathausmarkt", "latitude": 53.5503, "longitude": 9.9920},
    {"name": "Leipzig Markt", "latitude": 51.3403, "longitude": 12.3750},
]


@dataclass(frozen=True)
class Persona:
    id: int
    first_name: str
    role: str  # "customer", "business" or "admin"
    description: str
    language_code: str = "en"
    last_name: str | None = None

    def api(self) -> dict[str, Any]:
        return asdict(self)


def default_personas(admin_id: int = DEFAULT_ADMIN_ID) -> list[Persona]:
    return [
        Persona(1001, "Alice", "customer", "Customer in Berlin Mitte"),
        Persona(1002, "Bob", "customer", "Customer, second phone"),
        Persona(2001, "Greta", "business", "Owner of Bäckerei Sonne", last_name="Sonne"),
        Persona(admin_id, "Ada", "admin", f"Admin (ADMIN_IDS={admin_id})", last_name="Admin"),
    ]


@dataclass
class WebConfig:
    """What the page is told: whom it can play, where Flower is (and how the fake reaches it)."""

    admin_id: int = DEFAULT_ADMIN_ID
    flower_url: str | None = None
    flower_auth: str | None = None  # "user:password", used server-side only
    personas: list[Persona] = field(default_factory=list)
    time_zone: str = field(default_factory=lambda: os.environ.get("TELEGRAM_FAKE_WEB_TIME_ZONE") or DEFAULT_TIME_ZONE)

    def __post_init__(self) -> None:
        if not self.personas:
            self.personas = default_personas(self.admin_id)
        ZoneInfo(self.time_zone)  # an unknown zone fails here, at start, not in every browser

    def api(self) -> dict[str, Any]:
        return {
            "personas": [persona.api() for persona in self.personas],
            "admin_id": self.admin_id,
            "flower_url": self.flower_url,
            "flower_tasks": bool(self.flower_url and self.flower_auth),
            "places": PLACES,
            "time_zone": self.time_zone,
        }


class DemoRunner:
    """One demo scenario at a time, in a background thread, with its progress for the page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.status: dict[str, Any] = {"running": False, "steps": [], "error": None, "finished": None}

    def start(self, base_url: str, config: WebConfig) -> bool:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.status = {"running": True, "steps": [], "error": None, "started": time.time(), "finished": None}
            self._thread = threading.Thread(
                target=self._run, args=(base_url, config), name="sandbox-demo", daemon=True
            )
            self._thread.start()
            return True

    def _step(self, text: str) -> None:
        with self._lock:
            self.status["steps"].append({"time": time.time(), "text": text})

    def _run(self, base_url: str, config: WebConfig) -> None:
        # Imported here, not at the top: the demo uses the fake's client, so importing it while this
        # package is still being imported would be a cycle.
        from sandbox import demo  # noqa: PLC0415

        personas = {persona.role: persona for persona in reversed(config.personas)}
        try:
            demo.run(
                base_url,
                admin_id=config.admin_id,
                owner=personas["business"].api(),
                customer=personas["customer"].api(),
                progress=self._step,
            )
        except Exception as error:  # shown on the page
            logger.exception("demo failed")
            with self._lock:
                self.status["error"] = str(error) or type(error).__name__
        finally:
            with self._lock:
                self.status["running"] = False
                self.status["finished"] = time.time()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self.status, "steps": list(self.status["steps"])}


class QrCamera:
    """What the sandbox's QR scanner can point at: the QR codes in photos the bots sent."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._read: dict[str, str | None] = {}  # file_id -> the QR code's text (None: no QR code)
        try:
            import zxingcpp  # noqa: PLC0415 - a development requirement: without it the list is empty

            self._decoder: Any = zxingcpp
        except ImportError:
            self._decoder = None

    @property
    def available(self) -> bool:
        return self._decoder is not None

    def _text(self, file_id: str) -> str | None:
        if file_id not in self._read:
            stored = self.state.files.get(file_id)
            found = None
            if stored is not None and self._decoder is not None:
                with Image.open(io.BytesIO(stored.data)) as image:
                    codes = self._decoder.read_barcodes(image, formats=self._decoder.BarcodeFormat.QRCode)
                found = codes[0].text if codes else None
            self._read[file_id] = found
        return self._read[file_id]

    def codes(self) -> list[dict[str, Any]]:
        with self.state.lock:
            photos = [(message.date, chat, message) for bot in self.state.bots.values() for chat in bot.chats.values()
                      for message in chat.messages.values()
                      if message.sender == "bot" and not message.deleted and message.content.get("photo")]
            photos.sort(key=lambda item: (item[0], item[2].message_id), reverse=True)
            shown = [(chat.user.first_name, chat.id, message.message_id, message.content["photo"][-1]["file_id"],
                      str(message.content.get("caption") or "")) for _date, chat, message in
                     photos[:QR_PHOTOS_LOOKED_AT]]
        found = []
        for name, chat_id, message_id, file_id, caption in shown:
            text = self._text(file_id)
            if text is not None:
                found.append({"chat_id": chat_id, "name": name, "message_id": message_id, "file_id": file_id,
                              "caption": caption.split("\n", 1)[0][:120], "text": text})
        return found


def routes(state: SandboxState, config: WebConfig) -> list[BaseRoute]:
    runner = DemoRunner()
    camera = QrCamera(state)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def web_config(request: Request) -> Response:
        with state.lock:
            bot = state.default_bot.identity.api()
        return json_response({"ok": True, "bot": bot, **config.api()})

    async def tasks(request: Request) -> Response:
        if not (config.flower_url and config.flower_auth):
            return json_response({"ok": False, "error": "Flower is not configured for the sandbox"}, 404)
        try:
            chat_id = int(request.query_params["chat_id"])
        except (KeyError, ValueError):
            return json_response({"ok": False, "error": "chat_id must be an integer"}, 400)
        with state.lock:
            update_ids = {
                entry["update"]["update_id"] for entry in state.update_log if entry["chat_id"] == chat_id
            }
        user, _, password = config.flower_auth.partition(":")
        try:
            async with httpx.AsyncClient(timeout=FLOWER_TIMEOUT_SECONDS, auth=(user, password)) as http:
                response = await http.get(
                    f"{config.flower_url.rstrip('/')}/api/tasks",
                    params={"limit": FLOWER_TASK_LIMIT, "sort_by": "-received"},
                )
            response.raise_for_status()
            all_tasks = response.json()
        except (httpx.HTTPError, ValueError) as error:
            return json_response({"ok": False, "error": f"Flower did not answer: {error}"}, 502)
        return json_response({"ok": True, "tasks": tasks_for_chat(all_tasks, update_ids)})

    async def qr_codes(request: Request) -> Response:
        codes = await run_in_threadpool(camera.codes)
        return json_response({"ok": True, "decoder": camera.available, "codes": codes})

    async def demo_status(request: Request) -> Response:
        return json_response({"ok": True, **runner.describe()})

    async def demo_start(request: Request) -> Response:
        base_url = str(request.base_url).rstrip("/")
        if not runner.start(base_url, config):
            return json_response({"ok": False, "error": "the demo is already running", **runner.describe()}, 409)
        return json_response({"ok": True, **runner.describe()}, 202)

    return [
        Route("/", page, methods=["GET"]),
        Route("/chat", page, methods=["GET"]),
        Mount("/web", app=StaticFiles(directory=STATIC), name="web"),
        Route("/_sandbox/web/config", web_config, methods=["GET"]),
        Route("/_sandbox/web/tasks", tasks, methods=["GET"]),
        Route("/_sandbox/web/qr_codes", qr_codes, methods=["GET"]),
        Route("/_sandbox/demo", demo_status, methods=["GET"]),
        Route("/_sandbox/demo", demo_start, methods=["POST"]),
    ]


def tasks_for_chat(flower_tasks: dict[str, dict[str, Any]], update_ids: set[int]) -> list[dict[str, Any]]:
    """The tasks of Flower's ``/api/tasks`` answer that belong to these updates: each
    ``updates.handle_update`` whose argument is one of them (or ``updates.handle_updates`` that has
    one of them among its arguments), and every task it started
    (same ``root_id``). Newest first."""
    roots: set[str] = set()
    for task_id, task in flower_tasks.items():
        match = _UPDATE_ARGS.search(str(task.get("args") or ""))
        if match and update_ids.intersection(int(number) for number in match.group(1).split(",")):
            roots.add(task_id)
    chosen = [
        {
            "uuid": task_id,
            "name": task.get("name"),
            "state": task.get("state"),
            "args": task.get("args"),
            "received": task.get("received"),
            "started": task.get("started"),
            "runtime": task.get("runtime"),
            "retries": task.get("retries"),
            "worker": task.get("worker"),
            "root_id": task.get("root_id"),
            "exception": task.get("exception"),
        }
        for task_id, task in flower_tasks.items()
        if task_id in roots or task.get("root_id") in roots
    ]
    chosen.sort(key=lambda task: task.get("received") or 0, reverse=True)
    return chosen
