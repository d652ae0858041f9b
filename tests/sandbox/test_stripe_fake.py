"""The Stripe fake, exercised through the real `stripe` library and a real webhook receiver."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from sandbox.stripe_fake import PaymentDeclined, StripeFake, signature_header
from sandbox.stripe_fake.params import decode
from tests.sandbox.conftest import API_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]
# The fake's own copy of Stripe's example objects: every response must have their exact fields.
FIXTURES = json.loads((REPO_ROOT / "sandbox" / "stripe_fake" / "fixtures.json").read_text())["resources"]


class WebhookReceiver:
    """A tiny webhook endpoint that verifies every delivery the way our gateway must."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: queue.Queue[tuple[stripe.Event, bytes, str]] = queue.Queue()
        self.rejected: queue.Queue[str] = queue.Queue()
        self._scripted_statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get("Stripe-Signature", "")
                try:
                    event = stripe.Webhook.construct_event(payload, signature, receiver.secret)
                except stripe.SignatureVerificationError as exc:
                    receiver.rejected.put(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    status = receiver._scripted_statuses.pop(0) if receiver._scripted_statuses else 200
                receiver.received.put((event, payload, signature))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/stripe/webhook"

    def answer_next_with(self, *statuses: int) -> None:
        with self._lock:
            self._scripted_statuses.extend(statuses)

    def next_event(self, timeout: float = 5.0) -> stripe.Event:
        return self.received.get(timeout=timeout)[0]

    def events(self, count: int, timeout: float = 5.0) -> list[stripe.Event]:
        return [self.next_event(timeout) for _ in range(count)]

    def assert_nothing_more(self) -> None:
        assert self.received.empty()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


pytestmark = pytest.mark.usefixtures("stripe_on_fake")  # tests/sandbox/conftest.py


@pytest.fixture
def receiver(fake: StripeFake) -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver("whsec_test_secret")
    fake.configure_webhook(
        hook.url, hook.secret, enabled_events=["checkout.session.*", "refund.*", "charge.refunded"],
        retry_base_delay=0.05,
    )
    yield hook
    fake.remove_webhook()
    hook.close()


def line_item(currency: str, unit_amount: int, name: str, quantity: int = 1) -> dict[str, Any]:
    return {
        "price_data": {"currency": currency, "unit_amount": unit_amount, "product_data": {"name": name}},
        "quantity": quantity,
    }


def create_session(**overrides: Any) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [line_item("eur", 450, "Surprise bag", quantity=2)],
        "success_url": "https://example.test/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://example.test/cancel",
        "client_reference_id": "order-42",
        "metadata": {"order_id": "42"},
        "payment_intent_data": {"metadata": {"order_id": "42"}},
    }
    params.update(overrides)
    return stripe.checkout.Session.create(**params)


def paid_session(fake: StripeFake) -> stripe.checkout.Session:
    session = create_session()
    fake.pay(session.id)
    return stripe.checkout.Session.retrieve(session.id)


# ------------------------------------------------------------- wire format

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_VALUES = st.recursive(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10),
    lambda children: st.lists(children, min_size=1, max_size=3)
    | st.dictionaries(_KEYS, children, min_size=1, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_form_decoding_inverts_the_library_encoding(params: dict[str, Any]) -> None:
    # Exactly what stripe/_api_requestor.py does to a request's parameters.
    encoded = urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")
    assert decode(encoded) == params


def test_form_decoding_accepts_empty_brackets_for_lists() -> None:
    assert decode("expand[]=payment_intent&expand[]=line_items&metadata[order_id]=7") == {
        "expand": ["payment_intent", "line_items"],
        "metadata": {"order_id": "7"},
    }


# ------------------------------------------------------------------ sessions


def test_created_session_has_the_real_shape_and_our_values(fake: StripeFake) -> None:
    session = create_session(customer_email="ann@example.test")

    assert session.object == "checkout.session"
    assert re.fullmatch(r"cs_test_\w{58}", session.id)
    assert set(session.to_dict()) == set(FIXTURES["checkout.session"])
    assert session.url == f"{fake.url}/checkout/{session.id}"
    assert (session.amount_total, session.currency, session.mode) == (900, "eur", "payment")
    assert (session.status, session.payment_status, session.payment_intent) == ("open", "unpaid", None)
    assert session.metadata.to_dict() == {"order_id": "42"}
    assert session.client_reference_id == "order-42"
    assert session.customer_email == "ann@example.test"
    assert session.success_url == "https://example.test/paid?session={CHECKOUT_SESSION_ID}"
    assert session.expires_at - session.created == 24 * 3600

    items = stripe.checkout.Session.list_line_items(session.id)
    assert [(i.description, i.quantity, i.amount_total, i.price.unit_amount) for i in items.data] == [
        ("Surprise bag", 2, 900, 450)
    ]


def test_same_idempotency_key_and_params_replays_the_same_object(fake: StripeFake) -> None:
    first = create_session(idempotency_key="order-42-attempt-1")
    second = create_session(idempotency_key="order-42-attempt-1")

    assert second.id == first.id
    assert second.to_dict() == first.to_dict()
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(fake.objects("checkout.session")) == 1


def test_same_idempotency_key_with_other_params_is_an_idempotency_error() -> None:
    create_session(idempotency_key="k-1")
    with pytest.raises(stripe.IdempotencyError) as raised:
        create_session(idempotency_key="k-1", client_reference_id="order-43")
    assert raised.value.http_status == 400


def test_idempotency_keys_are_scoped_per_api_key(fake: StripeFake) -> None:
    first = create_session(idempotency_key="shared-key")
    other = create_session(idempotency_key="shared-key", api_key="sk_test_another_account")
    assert other.id != first.id


def test_concurrent_requests_with_one_key_create_one_object(fake: StripeFake) -> None:
    barrier = threading.Barrier(8)
    ids: queue.Queue[str] = queue.Queue()

    def create() -> None:
        barrier.wait()
        ids.put(create_session(idempotency_key="race-key").id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len({ids.get_nowait() for _ in range(8)}) == 1
    assert len(fake.objects("checkout.session")) == 1


def test_retrieve_with_expand_list_and_paginate(fake: StripeFake) -> None:
    sessions = [create_session(client_reference_id=f"order-{n}") for n in range(3)]
    fake.pay(sessions[0].id)

    expanded = stripe.checkout.Session.retrieve(sessions[0].id, expand=["payment_intent"])
    assert expanded.payment_intent.object == "payment_intent"
    assert expanded.payment_intent.status == "succeeded"

    page = stripe.checkout.Session.list(limit=2)
    assert [s.id for s in page.data] == [sessions[2].id, sessions[1].id]  # newest first
    assert page.has_more
    rest = stripe.checkout.Session.list(limit=2, starting_after=page.data[-1].id)
    assert [s.id for s in rest.data] == [sessions[0].id] and not rest.has_more
    assert [s.id for s in stripe.checkout.Session.list(limit=1).auto_paging_iter()] == [
        s.id for s in reversed(sessions)
    ]

    assert [s.id for s in stripe.checkout.Session.list(status="complete").data] == [sessions[0].id]
    by_intent = stripe.checkout.Session.list(payment_intent=expanded.payment_intent.id)
    assert [s.id for s in by_intent.data] == [sessions[0].id]
    assert stripe.checkout.Session.list(created={"gt": sessions[2].created}).data == []
    assert len(stripe.checkout.Session.list(created={"gte": sessions[0].created}).data) == 3


def test_unknown_session_is_a_404_resource_missing() -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        stripe.checkout.Session.retrieve("cs_test_missing")
    assert raised.value.http_status == 404
    assert raised.value.code == "resource_missing"
    assert "No such checkout session: 'cs_test_missing'" in raised.value.user_message


def test_expire_only_open_sessions(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session()
    expired = stripe.checkout.Session.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    event = receiver.next_event()
    assert (event.type, event.data.object.id) == ("checkout.session.expired", session.id)
    assert event.request.id is not None

    with pytest.raises(stripe.InvalidRequestError, match=r'status in \["open"\] can be expired'):
        stripe.checkout.Session.expire(session.id)


@pytest.mark.parametrize("lifetime", [29 * 60, 24 * 3600 + 60])
def test_expires_at_outside_30_minutes_to_24_hours_is_rejected(lifetime: int) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create_session(expires_at=int(time.time()) + lifetime)
    assert (raised.value.http_status, raised.value.param) == (400, "expires_at")


def test_session_expires_when_the_clock_passes_expires_at(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session(expires_at=int(time.time()) + 3600)
    assert session.expires_at == pytest.approx(time.time() + 3600, abs=5)
    fake.advance_clock(3601)
    assert stripe.checkout.Session.retrieve(session.id).status == "expired"
    assert receiver.next_event().type == "checkout.session.expired"


def test_unknown_and_missing_params_are_rejected_like_stripe() -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        create_session(shipping_options=[{"shipping_rate": "shr_1"}])
    assert unknown.value.code == "parameter_unknown"
    assert unknown.value.param == "shipping_options"

    with pytest.raises(stripe.InvalidRequestError) as missing:
        create_session(line_items=[{"price_data": {"unit_amount": 100, "product_data": {"name": "x"}}, "quantity": 1}])
    assert missing.value.code == "parameter_missing"
    assert missing.value.param == "line_items[0][price_data][currency]"


def test_stripe_client_with_base_addresses(fake: StripeFake) -> None:
    client = stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, max_network_retries=0)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [line_item("usd", 300, "Bread")],
        },
        options={"idempotency_key": "client-key"},
    )
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 300


# ------------------------------------------------------------ auth and faults


def test_missing_or_wrong_api_key_is_401() -> None:
    with pytest.raises(stripe.AuthenticationError) as wrong:
        stripe.checkout.Session.list(api_key="sk_live_not_allowed")
    assert wrong.value.http_status == 401

    response = httpx.get(f"{stripe.api_base}/v1/checkout/sessions", trust_env=False)
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("You did not provide an API key")


def test_a_fake_started_with_a_key_accepts_only_that_key() -> None:
    with StripeFake(api_key="sk_test_the_one") as strict:
        client = stripe.StripeClient("sk_test_the_one", base_addresses={"api": strict.url}, max_network_retries=0)
        assert client.v1.events.list().data == []
        other = stripe.StripeClient("sk_test_other", base_addresses={"api": strict.url}, max_network_retries=0)
        with pytest.raises(stripe.AuthenticationError):
            other.v1.events.list()


def test_injected_500_and_429_surface_as_library_errors(fake: StripeFake) -> None:
    fake.add_fault("api_error", path="/v1/checkout/sessions", method="POST")
    with pytest.raises(stripe.APIError) as server_error:
        create_session()
    assert server_error.value.http_status == 500

    fake.add_fault("rate_limit", path="/v1/checkout/sessions*", count=2)
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError):
            stripe.checkout.Session.list()
    assert stripe.checkout.Session.list().data == []
    assert fake.objects("checkout.session") == []  # failed requests did no work


def test_library_retries_an_injected_500_with_the_same_idempotency_key(
    fake: StripeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "max_network_retries", 1)
    fake.add_fault("api_error", path="/v1/checkout/sessions", count=1)
    session = create_session()
    assert [s["id"] for s in fake.objects("checkout.session")] == [session.id]


def test_a_delayed_answer_times_out_and_the_retry_is_replayed(fake: StripeFake) -> None:
    impatient = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": fake.url},
        http_client=stripe.RequestsClient(timeout=0.3),
        max_network_retries=0,
    )
    params = {
        "mode": "payment",
        "line_items": [line_item("eur", 100, "x")],
    }
    fake.add_fault("delay", path="/v1/checkout/sessions", delay_seconds=1.0)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.checkout.sessions.create(params=params, options={"idempotency_key": "slow-1"})
    patient = stripe.StripeClient(API_KEY, base_addresses={"api": fake.url}, max_network_retries=0)
    retried = patient.v1.checkout.sessions.create(params=params, options={"idempotency_key": "slow-1"})
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert [s["id"] for s in fake.objects("checkout.session")] == [retried.id]


def test_card_decline_mode_keeps_the_session_open(fake: StripeFake) -> None:
    session = create_session()
    fake.add_fault("card_decline", decline_code="insufficient_funds")
    with pytest.raises(PaymentDeclined) as declined:
        fake.pay(session.id)
    assert declined.value.body["error"]["decline_code"] == "insufficient_funds"
    assert declined.value.session["status"] == "open"
    assert stripe.checkout.Session.retrieve(session.id).status == "open"
    assert fake.pay(session.id)["payment_status"] == "paid"  # the fault was used up


# --------------------------------------------------------------- webhooks


def test_payment_delivers_a_signed_checkout_session_completed(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session()
    fake.pay(session.id)

    event, payload, signature = receiver.received.get(timeout=5)
    assert event.type == "checkout.session.completed"
    assert set(event.to_dict()) == set(FIXTURES["event"])
    assert event.id.startswith("evt_") and event.livemode is False
    assert event.api_version == "2026-10-28.endive"
    completed = event.data.object
    assert (completed.id, completed.status, completed.payment_status) == (session.id, "complete", "paid")
    assert completed.metadata.order_id == "42"
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, signature, "whsec_wrong_secret")

    assert fake.wait_for_deliveries(timeout=5)
    assert stripe.Event.retrieve(event.id).pending_webhooks == 0
    intent = stripe.PaymentIntent.retrieve(completed.payment_intent)
    assert (intent.status, intent.amount, intent.metadata.order_id) == ("succeeded", 900, "42")
    assert set(intent.to_dict()) == set(FIXTURES["payment_intent"])
    charge = stripe.Charge.retrieve(intent.latest_charge)
    assert set(charge.to_dict()) == set(FIXTURES["charge"])


def test_signature_header_matches_the_library(fake: StripeFake) -> None:
    payload = b'{"id": "evt_1", "object": "event"}'
    header = signature_header(payload, "whsec_x", 1700000000)
    expected = stripe.WebhookSignature._compute_signature(f"1700000000.{payload.decode()}", "whsec_x")
    assert header == f"t=1700000000,v1={expected}"


def test_receiver_with_the_wrong_secret_rejects_and_stripe_retries(fake: StripeFake) -> None:
    hook = WebhookReceiver("whsec_receiver_expects_this")
    try:
        fake.configure_webhook(hook.url, "whsec_fake_signs_with_that", max_attempts=2, retry_base_delay=0.01)
        fake.pay(create_session().id)
        assert "No signatures found matching the expected signature" in hook.rejected.get(timeout=5)
        assert fake.wait_for_deliveries(timeout=5)
        statuses = {(a["attempt"], a["status"], a["http_status"]) for a in fake.deliveries()}
        assert (2, "failed", 400) in statuses
        hook.assert_nothing_more()
    finally:
        fake.remove_webhook()
        hook.close()


def test_every_event_delivered_k_times_when_duplicates_is_on(fake: StripeFake, receiver: WebhookReceiver) -> None:
    fake.configure_webhook(duplicates=3)
    fake.pay(create_session().id)
    events = receiver.events(3)
    assert {e.id for e in events} == {events[0].id}
    assert {e.type for e in events} == {"checkout.session.completed"}
    assert fake.wait_for_deliveries(timeout=5)
    receiver.assert_nothing_more()


def test_out_of_order_delivers_a_burst_newest_first(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = paid_session(fake)
    assert receiver.next_event().type == "checkout.session.completed"

    fake.configure_webhook(out_of_order=True, reorder_window=0.2)
    stripe.Refund.create(payment_intent=session.payment_intent)
    assert [e.type for e in receiver.events(2)] == ["charge.refunded", "refund.created"]

    created = [e.type for e in reversed(stripe.Event.list(limit=2).data)]
    assert created == ["refund.created", "charge.refunded"]


def test_non_2xx_answers_are_retried_with_backoff(fake: StripeFake, receiver: WebhookReceiver) -> None:
    receiver.answer_next_with(500, 503)
    fake.pay(create_session().id)
    events = receiver.events(3)
    assert len({e.id for e in events}) == 1
    assert fake.wait_for_deliveries(timeout=5)
    attempts = fake.deliveries(event_id=events[0].id)
    assert [(a["attempt"], a["status"], a["http_status"]) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert attempts[0]["retry_in"] == pytest.approx(0.05)
    assert attempts[1]["retry_in"] == pytest.approx(0.1)


def test_dropped_first_attempt_counts_as_timeout_and_is_resent(fake: StripeFake, receiver: WebhookReceiver) -> None:
    fake.configure_webhook(drop_first_attempts=1)
    fake.pay(create_session().id)
    first, second = receiver.events(2)
    assert first.id == second.id
    assert fake.wait_for_deliveries(timeout=5)
    assert [a["status"] for a in fake.deliveries()] == ["timeout", "succeeded"]


def test_unreachable_endpoint_gives_up_after_max_attempts(fake: StripeFake) -> None:
    dead = WebhookReceiver("whsec_x")
    url = dead.url
    dead.close()  # nothing listens on that port any more
    fake.configure_webhook(url, "whsec_x", max_attempts=2, retry_base_delay=0.01)
    fake.pay(create_session().id)
    assert fake.wait_for_deliveries(timeout=5)
    assert {a["status"] for a in fake.deliveries()} == {"connection_error"}
    assert len(fake.deliveries()) == 3 * 2  # three events, two attempts each
    fake.remove_webhook()


# ---------------------------------------------------- async payments, refunds


def test_async_payment_completes_unpaid_then_succeeds(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session()
    completed = fake.pay(session.id, asynchronous=True, outcome=None)
    assert (completed["status"], completed["payment_status"]) == ("complete", "unpaid")
    assert stripe.PaymentIntent.retrieve(completed["payment_intent"]).status == "processing"
    assert receiver.next_event().data.object.payment_status == "unpaid"

    fake.settle(session.id, "succeeded")
    event = receiver.next_event()
    assert event.type == "checkout.session.async_payment_succeeded"
    assert event.data.object.payment_status == "paid"
    assert stripe.PaymentIntent.retrieve(completed["payment_intent"]).status == "succeeded"


def test_async_payment_can_fail_later_on_its_own(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session()
    fake.pay(session.id, asynchronous=True, outcome="failed", settle_after=0.2)
    assert receiver.next_event().type == "checkout.session.completed"
    failed = receiver.next_event()
    assert failed.type == "checkout.session.async_payment_failed"
    assert (failed.data.object.status, failed.data.object.payment_status) == ("complete", "unpaid")
    intent = stripe.PaymentIntent.retrieve(failed.data.object.payment_intent)
    assert intent.status == "requires_payment_method"


def test_full_refund(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = paid_session(fake)
    receiver.next_event()
    refund = stripe.Refund.create(
        payment_intent=session.payment_intent, reason="requested_by_customer", metadata={"order_id": "42"},
        idempotency_key="refund-42",
    )
    assert (refund.object, refund.status, refund.amount, refund.currency) == ("refund", "succeeded", 900, "eur")
    assert set(refund.to_dict()) == set(FIXTURES["refund"])
    assert refund.payment_intent == session.payment_intent
    assert stripe.Refund.retrieve(refund.id).metadata.order_id == "42"

    created, refunded = receiver.events(2)
    assert (created.type, created.data.object.id) == ("refund.created", refund.id)
    assert created.request.idempotency_key == "refund-42"
    assert refunded.type == "charge.refunded"
    assert (refunded.data.object.amount_refunded, refunded.data.object.refunded) == (900, True)

    with pytest.raises(stripe.InvalidRequestError) as again:
        stripe.Refund.create(payment_intent=session.payment_intent)
    assert again.value.code == "charge_already_refunded"


def test_partial_refunds_and_over_refund(fake: StripeFake) -> None:
    session = paid_session(fake)
    first = stripe.Refund.create(payment_intent=session.payment_intent, amount=300)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        stripe.Refund.create(payment_intent=session.payment_intent, amount=601)
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    assert "greater than unrefunded amount on charge (€6.00)" in too_much.value.user_message
    second = stripe.Refund.create(payment_intent=session.payment_intent, amount=600)

    listed = stripe.Refund.list(payment_intent=session.payment_intent)
    assert [r.id for r in listed.data] == [second.id, first.id]
    charge = stripe.Charge.retrieve(first.charge)
    assert (charge.amount_refunded, charge.refunded) == (900, True)


def test_refund_of_an_unpaid_intent_is_refused(fake: StripeFake) -> None:
    session = create_session()
    intent_id = fake.pay(session.id, asynchronous=True, outcome=None)["payment_intent"]
    with pytest.raises(stripe.InvalidRequestError, match="does not have a successful charge"):
        stripe.Refund.create(payment_intent=intent_id)


# ------------------------------------------------------------------ events


def test_events_list_filters_and_retrieve(fake: StripeFake) -> None:
    session = paid_session(fake)
    stripe.Refund.create(payment_intent=session.payment_intent, amount=100)

    types = [e.type for e in stripe.Event.list().data]
    assert types == [
        "charge.refunded",
        "refund.created",
        "checkout.session.completed",
        "payment_intent.succeeded",
        "charge.succeeded",
    ]
    assert [e.type for e in stripe.Event.list(type="checkout.session.*").data] == ["checkout.session.completed"]
    assert [e.type for e in stripe.Event.list(type="refund.created").data] == ["refund.created"]
    everything = list(stripe.Event.list(limit=2).auto_paging_iter())
    assert [e.type for e in everything] == types
    assert stripe.Event.retrieve(everything[0].id).type == "charge.refunded"
    assert stripe.Event.list(created={"lt": everything[-1].created}).data == []


# ------------------------------------------------------------- hosted page


def test_hosted_page_shows_the_order_and_a_decline_keeps_it_open(fake: StripeFake) -> None:
    session = create_session()
    with httpx.Client(trust_env=False) as browser:
        page = browser.get(session.url)
        assert page.status_code == 200
        assert "Surprise bag" in page.text and "€9.00" in page.text and "Pay €9.00" in page.text
        assert not re.search(r"<script|<link|<img|src=", page.text)  # no external assets

        declined = browser.post(f"{session.url}/decline")
        assert declined.status_code == 402
        assert "Your card was declined." in declined.text
        assert stripe.checkout.Session.retrieve(session.id).status == "open"

        paid = browser.post(f"{session.url}/pay", data={"method": "card"})
    # example.test is not a loopback address: the page links instead of redirecting.
    assert paid.status_code == 200
    assert "Payment received" in paid.text
    assert f"https://example.test/paid?session={session.id}" in paid.text
    assert stripe.checkout.Session.retrieve(session.id).payment_status == "paid"


def test_hosted_page_redirects_to_a_reachable_success_url(fake: StripeFake, receiver: WebhookReceiver) -> None:
    session = create_session(success_url=receiver.url.replace("/stripe/webhook", "/done?cs={CHECKOUT_SESSION_ID}"))
    with httpx.Client(trust_env=False) as browser:
        paid = browser.post(f"{session.url}/pay", data={"method": "delayed_success"})
    assert paid.status_code == 303
    assert paid.headers["location"].endswith(f"/done?cs={session.id}")
    assert receiver.next_event().type == "checkout.session.completed"
    assert receiver.next_event().type == "checkout.session.async_payment_succeeded"


# --------------------------------------------------------- reset and CLI


def test_reset_forgets_everything(fake: StripeFake) -> None:
    paid_session(fake)
    fake.add_fault("rate_limit", count=None)
    fake.reset()
    assert fake.objects() == [] and fake.faults() == []
    assert stripe.checkout.Session.list().data == []


def test_command_line_server(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.stripe_fake", "--port", "0", "--webhook-url", "http://127.0.0.1:9/x"],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:  # blocks until uvicorn reports where it listens
            lines.append(line)
            if "Uvicorn running on" in line:
                break
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[-1]).group(0)
        assert any("signed with whsec_" in line for line in lines)
        client = stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)
        assert client.v1.checkout.sessions.list().data == []
    finally:
        process.terminate()
        process.wait(timeout=10)
