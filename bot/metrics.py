"""Prometheus metrics of the gateway and the poller."""

from prometheus_client import Counter, Histogram

UPDATES = Counter(
    "gateway_updates_total",
    "Telegram updates received by the gateway, by outcome",
    ["outcome"],  # enqueued, duplicate, unauthorized, malformed, too_large, broker_down
)
ENQUEUE_SECONDS = Histogram(
    "gateway_enqueue_seconds",
    "Time to put an update durably on the broker",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

# Every webhook request the gateway did not accept (a non-2xx answer), for the alerts. The sender
# retries a 5xx (Telegram and Stripe both do); a 4xx is dropped by us for good. Details per outcome
# are in gateway_updates_total and gateway_stripe_events_total.
WEBHOOK_FAILURES = Counter(
    "gateway_webhook_failures_total", "Webhook requests answered with an error, by webhook and reason",
    ["webhook", "reason"],
)
FAILURE_REASONS = {
    400: "bad_request",  # not an update / not a Stripe event, or a bad Stripe signature
    401: "unauthorized",  # wrong or missing Telegram secret; Stripe webhook secret not configured
    413: "too_large",
    503: "broker_down",  # Redis unreachable: nothing was enqueued, the sender will retry
    500: "error",  # an exception in the gateway
}
WEBHOOKS = ("telegram", "stripe")
for _webhook in WEBHOOKS:  # every series exists from the start, so the first failure shows in rate()
    for _reason in FAILURE_REASONS.values():
        WEBHOOK_FAILURES.labels(_webhook, _reason)


def failure_reason(status: int) -> str:
    return FAILURE_REASONS.get(status, f"http_{status}")
