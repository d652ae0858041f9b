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
