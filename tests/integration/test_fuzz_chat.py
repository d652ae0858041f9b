"""Property-based fuzzing of every text step of the chat flows, straight through the worker's
update handler (engine.handle, one transaction per update, real Postgres; replies stay in the
outbox). Whatever a user types at a step: no crash, an answer every time, and nothing stored
from what was refused: a business or an offer exists only once its flow was completed with input
that passed every check.
"""

from __future__ import annotations

import itertools
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import engine
from core.db import session_scope
from models import Business, ConversationState, Notification, Offer
from tests.factories import make_business

_update_ids = itertools.count(9_100_000_000)
_users = itertools.count(8_100_000_000)

# Anything a person (or a script) might type: any Unicode, control characters, long, or empty-ish.
TYPED = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=400),
    st.sampled_from(["", " ", "\n", "0", "-1", "1e9", "NaN", "∞", "4,50,00", "18:00-", "25:00-26:00",
                     "<b>x</b>", "</b>", "&amp;", "/start", "/newoffer", "💩" * 50, "'; DROP TABLE offers; --"]),
)
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def _message(user: int, text: str) -> dict:
    return {"update_id": next(_update_ids), "message": {
        "message_id": next(_update_ids) % 1_000_000, "date": int(time.time()), "text": text,
        "chat": {"id": user, "type": "private", "first_name": "Fuzz"},
        "from": {"id": user, "is_bot": False, "first_name": "Fuzz", "language_code": "en"}}}


def _press(user: int, data: str) -> dict:
    return {"update_id": next(_update_ids), "callback_query": {
        "id": str(next(_update_ids)), "chat_instance": "fuzz", "data": data,
        "from": {"id": user, "is_bot": False, "first_name": "Fuzz"},
        "message": {"message_id": 1, "date": int(time.time()), "text": "…",
                    "chat": {"id": user, "type": "private", "first_name": "Fuzz"}}}}


def _handle(update: dict) -> engine.Handled:
    with session_scope() as session:
        return engine.handle(session, engine.parse(update))


def _say(user: int, text: str) -> engine.Handled:
    handled = _handle(_message(user, text))
    assert handled.notification_ids, f"no answer to {text!r}"
    return handled


def _texts(handled: engine.Handled) -> str:
    with session_scope() as session:
        return "\n".join(str(p.get("text") or p.get("caption") or "") for p in session.scalars(
            sa.select(Notification.payload).where(Notification.id.in_(handled.notification_ids))))


def _count(model) -> int:
    with session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


def _flow_step(user: int) -> tuple[str | None, str | None]:
    with session_scope() as session:
        state = session.get(ConversationState, user)
        return (state.flow, state.step) if state else (None, None)


# The registration flow, one valid answer per step (the last one completes it).
REGISTRATION = ["Bäckerei Fuzz", "Hauptstraße 1, 10115 Berlin", "+49 30 1234567"]
# The new-offer flow, up to the photo (the day is a button, not text).
NEW_OFFER = ["Surprise bag", "Croissants and rolls", "4,50", "9", "5", ("press", "flow:pick:day:tomorrow"),
             "18:00-19:30"]
OPTIONAL_NEW_OFFER_STEPS = {1}  # the description: blank means none


def _start_registration(user: int) -> None:
    _say(user, "/register")


def _start_new_offer(user: int) -> None:
    make_business(user, name=f"Fuzz bakery {user}")
    _say(user, "/newoffer")


def _walk(user: int, answers: list) -> None:
    """Answer the steps before the one under test; each valid answer must move the flow on."""
    for answer in answers:
        before = _flow_step(user)
        if isinstance(answer, tuple):
            _handle(_press(user, answer[1]))
        else:
            _say(user, answer)
        assert _flow_step(user) != before, f"{answer!r} did not move the flow on from {before}"


def _type_at_step(start, answers: list, step: int, typed: str, *, stored, completes: bool,
                  optional: bool = False) -> None:
    """Bring a new user to `step` of a flow, type `typed` there, and check what happened."""
    user = next(_users)
    rows_before = _count(stored)
    start(user)
    _walk(user, answers[:step])
    position = _flow_step(user)
    assert position[0] is not None, "the flow did not start"
    handled = _say(user, typed)
    assert "something went wrong" not in _texts(handled).lower()
    finished = completes and step == len(answers) - 1 and _flow_step(user)[0] is None
    if not finished:
        assert _count(stored) == rows_before  # nothing stored before the flow completes
    if _flow_step(user) != position and not optional:
        assert typed.strip(), f"an empty answer was accepted at step {step}"  # moved on: it passed the checks


@pytest.mark.parametrize("step", range(len(REGISTRATION)))
def test_any_text_at_a_registration_step(migrated, step):
    @FUZZ
    @given(typed=TYPED)
    def check(typed: str) -> None:
        _type_at_step(_start_registration, REGISTRATION, step, typed, stored=Business, completes=True)

    check()


@pytest.mark.parametrize("step", [i for i, a in enumerate(NEW_OFFER) if not isinstance(a, tuple)])
def test_any_text_at_a_new_offer_step(migrated, step):
    @FUZZ
    @given(typed=TYPED)
    def check(typed: str) -> None:
        # An offer is stored only with its photo, after the last text step.
        _type_at_step(_start_new_offer, NEW_OFFER, step, typed, stored=Offer, completes=False,
                      optional=step in OPTIONAL_NEW_OFFER_STEPS)

    check()


@FUZZ
@given(typed=TYPED)
def test_any_text_outside_a_flow_gets_an_answer(migrated, typed):
    user = next(_users)
    handled = _say(user, typed)
    assert "something went wrong" not in _texts(handled).lower()


@FUZZ
@given(data=st.text(max_size=70))
def test_any_button_data_gets_an_answer_and_no_crash(migrated, data):
    user = next(_users)
    _say(user, "/start")
    handled = _handle(_press(user, data))
    assert handled.callback_query_id is not None
    assert "something went wrong" not in _texts(handled).lower()
