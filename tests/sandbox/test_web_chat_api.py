"""The Telegram fake's additions for the web chat: the page and its files, its configuration, the
"/" menu as a client resolves it, the updates and calls of one chat, Flower's tasks of one chat,
and the demo runner (one at a time)."""

from __future__ import annotations

import io
import threading

import httpx
import pytest
from PIL import Image

from sandbox import demo
from sandbox.telegram_fake import TelegramFake
from sandbox.telegram_fake.web import WebConfig, tasks_for_chat


@pytest.fixture
def fake():
    with TelegramFake(web=WebConfig(admin_id=777)) as running:
        yield running


@pytest.fixture
def http(fake):
    with httpx.Client(base_url=fake.url, timeout=10) as client:
        yield client


def bot_call(http: httpx.Client, fake: TelegramFake, method: str, **payload) -> dict:
    response = http.post(f"/bot{fake.token}/{method}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def test_the_page_and_its_files_are_served_without_anything_from_outside(http):
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/web/app.js"></script>' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no fonts from the internet
    for path, kind in (("/web/app.js", "javascript"), ("/web/style.css", "text/css")):
        response = http.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "https://" not in response.text.replace("https://example", "")
    assert http.get("/chat").text == page.text
    assert http.get("/web/nothing.js").status_code == 404
    assert "innerHTML" not in http.get("/web/app.js").text  # bot text only ever becomes text nodes


def test_config_names_the_personas_with_the_configured_admin(http):
    config = http.get("/_sandbox/web/config").json()
    roles = [(persona["role"], persona["id"]) for persona in config["personas"]]
    assert roles == [("customer", 1001), ("customer", 1002), ("business", 2001), ("admin", 777)]
    assert [p["first_name"] for p in config["personas"]] == ["Alice", "Bob", "Greta", "Ada"]
    assert config["bot"]["username"] == "surplus_sandbox_bot"
    assert config["flower_url"] is None and config["flower_tasks"] is False
    assert any(place["name"].startswith("Berlin Mitte") for place in config["places"])
    assert config["time_zone"] == "Europe/Berlin"  # the businesses' zone: the page shows times as the bot writes them


def test_the_page_can_be_told_another_time_zone_but_not_an_unknown_one(monkeypatch):
    assert WebConfig(time_zone="America/New_York").api()["time_zone"] == "America/New_York"
    monkeypatch.setenv("TELEGRAM_FAKE_WEB_TIME_ZONE", "Europe/Lisbon")
    assert WebConfig().time_zone == "Europe/Lisbon"
    with pytest.raises(KeyError):  # zoneinfo.ZoneInfoNotFoundError: at start, not in the browser
        WebConfig(time_zone="Mars/Olympus_Mons")


def test_commands_resolve_like_a_client_does(fake, http):
    assert http.get("/_sandbox/commands").json()["commands"] == []
    bot_call(http, fake, "setMyCommands", commands=[{"command": "start", "description": "Main menu"}])
    bot_call(http, fake, "setMyCommands", commands=[{"command": "start", "description": "Hauptmenü"}],
             language_code="de")
    bot_call(http, fake, "setMyCommands", commands=[{"command": "vip", "description": "Only you"}],
             scope={"type": "chat", "chat_id": 1001})

    def menu(**query) -> list[str]:
        return [c["description"] for c in http.get("/_sandbox/commands", params=query).json()["commands"]]

    assert menu() == ["Main menu"]
    assert menu(language_code="de") == ["Hauptmenü"]
    assert menu(language_code="fr") == ["Main menu"]  # no French list: the default one
    assert menu(chat_id=1001) == ["Only you"]  # the narrowest scope wins
    assert menu(chat_id=1002, language_code="de") == ["Hauptmenü"]


def test_updates_of_a_chat_show_whether_the_bot_took_them(fake, http):
    client = fake.client()
    first = client.send_text(1001, "/start")
    client.send_text(1002, "hello")
    client.send_location(1001, 52.52, 13.405)
    updates = http.get("/_sandbox/updates", params={"chat_id": 1001}).json()["updates"]
    assert [u["kind"] for u in updates] == ["message", "message"]
    assert updates[0]["update_id"] == first["update_id"] and updates[0]["update"]["message"]["text"] == "/start"
    assert not any(u["delivered"] for u in updates)
    bot_call(http, fake, "getUpdates", offset=first["update_id"] + 1, timeout=0)
    updates = http.get("/_sandbox/updates", params={"chat_id": 1001, "limit": 5}).json()["updates"]
    assert [u["delivered"] for u in updates] == [True, False]
    assert len(http.get("/_sandbox/updates", params={"chat_id": 1001, "limit": 1}).json()["updates"]) == 1
    client.reset()
    assert http.get("/_sandbox/updates").json()["updates"] == []


def test_calls_of_a_chat_include_the_answers_to_its_button_presses(fake, http):
    client = fake.client()
    client.create_user(1001, "Alice")
    client.create_user(1002, "Bob")
    sent = bot_call(http, fake, "sendMessage", chat_id=1001, text="Tap",
                    reply_markup={"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]})
    bot_call(http, fake, "sendMessage", chat_id="1002", text="Other chat")
    pressed = client.press_button(1001, sent["message_id"], "go")
    bot_call(http, fake, "answerCallbackQuery", callback_query_id=pressed["callback_query_id"], text="Done")
    methods = [c["method"] for c in http.get("/_sandbox/calls", params={"chat_id": 1001}).json()["calls"]]
    assert methods == ["sendMessage", "answerCallbackQuery"]
    calls = http.get("/_sandbox/calls", params={"chat_id": 1002}).json()["calls"]
    assert [(c["method"], c["params"]["text"]) for c in calls] == [("sendMessage", "Other chat")]
    assert len(http.get("/_sandbox/calls", params={"chat_id": 1001, "limit": 1}).json()["calls"]) == 1


def test_tasks_of_a_chat_are_its_update_tasks_and_what_they_started():
    flower = {
        "a": {"name": "updates.handle_update", "args": "(update 10)", "state": "SUCCESS", "received": 1.0},
        "b": {"name": "reservations.place_order", "args": "(7,)", "root_id": "a", "received": 2.0},
        "c": {"name": "notifications.deliver_in_order", "args": "([1],)", "root_id": "a", "received": 3.0},
        "d": {"name": "updates.handle_update", "args": "(update 11)", "received": 4.0},
        "e": {"name": "payments.handle_event", "args": "(stripe event evt_1)", "received": 5.0},
        "f": {"name": "notifications.deliver_in_order", "args": "([2],)", "root_id": "d", "received": 6.0},
        "g": {"name": "updates.handle_updates", "args": "(updates 20, 21, 22)", "received": 7.0},
    }
    assert [t["uuid"] for t in tasks_for_chat(flower, {10})] == ["c", "b", "a"]
    assert [t["uuid"] for t in tasks_for_chat(flower, {10, 11})] == ["f", "d", "c", "b", "a"]
    assert tasks_for_chat(flower, {12}) == []
    assert [t["uuid"] for t in tasks_for_chat(flower, {21})] == ["g"]  # one of the updates a task had together


def test_tasks_need_flower_and_say_so_when_it_is_away(http):
    assert http.get("/_sandbox/web/tasks", params={"chat_id": 1}).status_code == 404
    from localenv.services import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    with TelegramFake(web=WebConfig(flower_url=closed, flower_auth="admin:secret")) as fake, \
            httpx.Client(base_url=fake.url, timeout=10) as client:
        assert client.get("/_sandbox/web/config").json()["flower_tasks"] is True
        assert client.get("/_sandbox/web/tasks").status_code == 400
        response = client.get("/_sandbox/web/tasks", params={"chat_id": 1})
        assert response.status_code == 502 and "Flower did not answer" in response.json()["error"]
        assert "secret" not in client.get("/_sandbox/web/config").text


def test_one_demo_at_a_time(http, monkeypatch):
    release, calls = threading.Event(), []

    def fake_run(base_url, **kwargs):
        calls.append((base_url, kwargs["admin_id"], kwargs["owner"]["id"], kwargs["customer"]["id"]))
        kwargs["progress"]("step one")
        release.wait(10)

    monkeypatch.setattr(demo, "run", fake_run)
    assert http.get("/_sandbox/demo").json()["running"] is False
    started = http.post("/_sandbox/demo")
    assert started.status_code == 202 and started.json()["running"] is True
    assert http.post("/_sandbox/demo").status_code == 409
    release.set()
    for _ in range(100):
        status = http.get("/_sandbox/demo").json()
        if not status["running"]:
            break
        threading.Event().wait(0.05)
    assert status["running"] is False and status["error"] is None
    assert [step["text"] for step in status["steps"]] == ["step one"]
    assert calls == [(str(http.base_url).rstrip("/"), 777, 2001, 1001)]


def test_a_failing_demo_reports_why(http, monkeypatch):
    def broken(base_url, **kwargs):
        raise demo.DemoError("the bot did not answer")

    monkeypatch.setattr(demo, "run", broken)
    assert http.post("/_sandbox/demo").status_code == 202
    for _ in range(100):
        status = http.get("/_sandbox/demo").json()
        if not status["running"]:
            break
        threading.Event().wait(0.05)
    assert status["error"] == "the bot did not answer"


@pytest.mark.parametrize("kind", ["pastries", "loaf", "fruit"])
def test_demo_photos_are_real_jpegs_big_enough_for_an_offer(kind):
    image = Image.open(io.BytesIO(demo.food_photo(kind)))
    assert image.format == "JPEG" and image.size == (960, 720)
