"""Orders and payments: reservations refused, the Pay button, paid, refunds, cancellations."""

from __future__ import annotations
