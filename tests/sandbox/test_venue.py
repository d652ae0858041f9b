"""The Telegram fake's sendVenue: a venue message carries its location too, as Telegram's does, and
a bad location or a missing title is refused as Telegram refuses it."""

from __future__ import annotations

import httpx

from sandbox.telegram_fake import TelegramFake, TelegramFakeClient


def test_send_venue_as_telegram_sends_it():
    with TelegramFake() as fake, httpx.Client(base_url=fake.url, timeout=10) as http:
        client = TelegramFakeClient(fake.url)
        client.create_user(4711, "Vera")
        url = f"/bot{fake.token}/sendVenue"
        sent = http.post(url, json={"chat_id": 4711, "latitude": 52.52, "longitude": 13.405, "title": "Bäckerei",
                                    "address": "Hauptstraße 1 · ☎ +49 30 1234567"})
        assert sent.status_code == 200, sent.text
        message = sent.json()["result"]
        assert message["venue"] == {"location": {"latitude": 52.52, "longitude": 13.405}, "title": "Bäckerei",
                                    "address": "Hauptstraße 1 · ☎ +49 30 1234567"}
        assert message["location"] == {"latitude": 52.52, "longitude": 13.405}
        assert [m.get("venue", {}).get("title") for m in client.messages(4711)] == ["Bäckerei"]
        for bad in ({"latitude": 91, "longitude": 0, "title": "x", "address": "y"},
                    {"latitude": 52.5, "longitude": 13.4, "address": "y"}):
            refused = http.post(url, json={"chat_id": 4711, **bad})
            assert refused.status_code == 400 and not refused.json()["ok"]
