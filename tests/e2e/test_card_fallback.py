"""A deal card whose photo Telegram no longer knows still reaches the customer, as text with the
same buttons: a file_id stored before the Bot API server (or the sandbox fake) lost its files gets
"400 Wrong file identifier", and the customer must not be left with nothing."""

from __future__ import annotations

import io
import time

from PIL import Image

from models import PhotoStatus
from sandbox.telegram_fake.files import prepare_photo
from tests.e2e.test_payments import plain
from tests.factories import make_business, make_offer

LOST_FILE_ID = "AgACAgIAAxkBAAI" + "lost-before-the-restart-0123456789abcdefghij"


def buttons(message: dict) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    return {b["text"]: b.get("callback_data") or b.get("url") for row in markup.get("inline_keyboard", [])
            for b in row}


def open_offer(stack, user: int, offer_id: int) -> list[dict]:
    sent = stack.telegram.send_text(user, f"/start offer_{offer_id}")
    return stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)


def test_a_card_whose_photo_is_gone_arrives_as_text_with_its_buttons(stack, user):
    business = make_business(name="Bäckerei Mond")
    offer_id = make_offer(business, "Pretzel bag", quantity=3, photo_card_file_id=LOST_FILE_ID,
                          photo_status=PhotoStatus.READY)
    (card,) = open_offer(stack, user, offer_id)
    assert "photo" not in card
    text = plain(card["text"])
    assert "Pretzel bag" in text and "€3.50" in text and "Bäckerei Mond" in text
    quantities = [data for data in buttons(card).values() if data.startswith(f"qty:{offer_id}:")]
    assert [data.split(":")[2] for data in quantities] == ["1", "2", "3"]
    assert any(data.startswith(f"follow:{business}:") for data in buttons(card).values())
    deadline = time.monotonic() + 10
    while "photo_sent_as_text" not in stack.worker.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "photo_sent_as_text" in stack.worker.output()

    # The buttons work on the text card as on a photo card.
    pressed = stack.telegram.press_button(user, card["message_id"], quantities[1])
    (confirm,) = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)
    assert "2 × Pretzel bag" in plain(confirm["text"])


def test_a_card_with_a_known_photo_is_still_a_photo(stack, telegram_fake, user):
    picture = io.BytesIO()
    Image.new("RGB", (400, 400), "orange").save(picture, "JPEG")
    with telegram_fake.state.lock:  # a photo the fake knows, as if the bot had uploaded it
        file_id = telegram_fake.state.files.add_photo(prepare_photo(picture.getvalue()))[-1].file_id
    business = make_business(name="Café Stern")
    offer_id = make_offer(business, "Cake slices", photo_card_file_id=file_id, photo_status=PhotoStatus.READY)
    replies = open_offer(stack, user, offer_id)
    card = replies[-1]
    assert card["photo"][-1]["file_id"] == file_id and "Cake slices" in plain(card["caption"])
