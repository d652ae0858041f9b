"""Webhook signing and the delivery thread.

Deliveries are at-least-once, as at Stripe: any non-2xx answer, timeout or connection error
is retried with exponential backoff. The queue lives in FakeState; this module only signs,
sends and reports back. One thread delivers in queue order, so without the out-of-order switch
events arrive in the order they happened (Stripe promises no order; the switch shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

import httpx

from .state import AttemptOutcome, DeliveryJob, FakeState

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """`Stripe-Signature` exactly as Stripe computes it: HMAC-SHA256 of "<t>.<payload>"."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    def __init__(self, state: FakeState) -> None:
        self._state = state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stripe-fake-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._state.wake_deliveries()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def _run(self) -> None:
        # trust_env=False: a proxy from the environment must never see local webhook traffic.
        with httpx.Client(trust_env=False) as client:
            while (job := self._state.next_delivery(self._stop)) is not None:
                self._state.record_delivery(job, self._attempt(client, job))

    @staticmethod
    def _attempt(client: httpx.Client, job: DeliveryJob) -> AttemptOutcome:
        delivery, config = job.delivery, job.config
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Cache-Control": "no-cache",
            "Accept": "*/*; q=0.5, application/xml",
            "Stripe-Signature": signature_header(delivery.payload, config.secret, int(time.time())),
        }
        started = time.monotonic()
        http_status = None
        error: str | None
        try:
            response = client.post(config.url, content=delivery.payload, headers=headers, timeout=config.timeout)
        except httpx.TimeoutException:
            status, error = "timeout", f"no answer within {config.timeout} s"
        except httpx.HTTPError as exc:
            status, error = "connection_error", f"{type(exc).__name__}: {exc}"
        else:
            http_status = response.status_code
            ok = 200 <= http_status < 300
            status = "succeeded" if ok else "failed"
            error = None if ok else response.text[:200]
        if delivery.attempt <= config.drop_first_attempts:
            # The receiver did get this attempt; the fake acts as if the answer never came.
            status, error = "timeout", "answer dropped by the drop_first_attempts switch"
        return AttemptOutcome(status, http_status, error, int((time.monotonic() - started) * 1000))
