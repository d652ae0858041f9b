"""A button press is parsed without the parts of its message the bot never reads."""

from __future__ import annotations

import copy

from telegram import Message

from chat.engine import parse

CARD = {
    "message_id": 7, "date": 1_700_000_000, "chat": {"id": 5, "type": "private", "first_name": "Ann"},
    "from": {"id": 1, "is_bot": True, "first_name": "Surplus", "username": "surplus_bot"},
    "caption": "🥐 Croissant bag: 2 × €3.50", "caption_entities": [{"type": "bold", "offset": 0, "length": 15}],
    "photo": [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
              {"file_id": "large", "file_unique_id": "l", "width": 800, "height": 800}],
    "reply_markup": {"inline_keyboard": [[{"text": "🔕 Stop alerts", "callback_data": "alerts:off"}]]},
}


def _press(message: dict) -> dict:
    return {"update_id": 11, "callback_query": {
        "id": "q1", "chat_instance": "c", "data": "alerts:off", "message": message,
        "from": {"id": 5, "is_bot": False, "first_name": "Ann", "language_code": "de"}}}


def test_a_press_keeps_what_the_bot_reads_of_the_message_under_the_button():
    raw = _press(copy.deepcopy(CARD))
    before = copy.deepcopy(raw)
    update = parse(raw)
    query = update.callback_query
    assert query is not None and query.data == "alerts:off" and query.from_user.language_code == "de"
    pressed = query.message
    assert isinstance(pressed, Message)
    assert (pressed.message_id, pressed.chat.id, pressed.from_user.id) == (7, 5, 1)
    assert [size.file_id for size in pressed.photo] == ["small", "large"]  # "pressed under a photo"
    assert pressed.caption is None and pressed.reply_markup is None and pressed.caption_entities == ()
    assert update.effective_chat.id == 5 and update.effective_user.id == 5
    assert raw == before  # the queued body is not changed (a redelivery or a dead letter keeps it whole)


def test_a_press_under_a_message_telegram_no_longer_shows_is_still_read():
    update = parse(_press({"message_id": 7, "date": 0, "chat": {"id": 5, "type": "private"}}))
    assert update.callback_query.message.message_id == 7 and update.effective_chat.id == 5

