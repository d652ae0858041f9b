"""What beat runs, and when. Beat uses celery-redbeat: a lock in Redis lets only one beat
process act at a time, so a second one (a redeploy, a mistake) cannot fire a job twice. Every job
is idempotent besides, so a job that does run twice (a manual trigger during a beat run) has one
effect.

`BEAT_SCHEDULE_JSON` replaces the schedule (operators: pause or re-time jobs without a release;
tests: a tiny schedule). It is a JSON object of entries
``{"<name>": {"task": "maintenance.cleanup", "every": 30, "kwargs": {...}}}`` where `every` is in
seconds, or ``"cron": "17 3 * * *"`` (minute hour day-of-month month day-of-week, UTC).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from celery.schedules import crontab

BEAT = {"actor": "beat"}

# Expiry runs often, so a lapsed hold or an ended window is acted on within a minute. Options
# `expires` drop a run that waited in the queue longer than its period: the next one does its work.
DEFAULT_SCHEDULE: dict[str, dict[str, Any]] = {
    "expire-offers": {
        "task": "maintenance.expire_offers",
        "schedule": timedelta(minutes=1),
        "kwargs": dict(BEAT),
        "options": {"expires": 60},
    },
    "release-expired-holds": {
        "task": "maintenance.release_expired_holds",
        "schedule": timedelta(seconds=30),
        "kwargs": dict(BEAT),
        "options": {"expires": 30},
    },
    "reconcile-payments": {
        "task": "maintenance.reconcile_payments",
        "schedule": timedelta(minutes=5),
        "kwargs": dict(BEAT),
        "options": {"expires": 300},
    },
    # A hand-over whose process died between its commit and its publication, and that no
    # redelivery published: out within a minute (20 s grace, see tasks.maintenance).
    "resend-handovers": {
        "task": "maintenance.resend_handovers",
        "schedule": timedelta(seconds=30),
        "kwargs": dict(BEAT),
        "options": {"expires": 30},
    },
    # An acknowledged update that a dying worker took from the queue and lost (core/inbox.py): queued
    # again once unprocessed past the `updates` visibility timeout + 15 s, so answered within 2 min.
    "requeue-lost-updates": {
        "task": "maintenance.requeue_lost_updates",
        "schedule": timedelta(seconds=30),
        "kwargs": dict(BEAT),
        "options": {"expires": 30},
    },
    "pickup-reminders": {
        "task": "maintenance.send_pickup_reminders",
        "schedule": timedelta(minutes=5),
        "kwargs": dict(BEAT),
        "options": {"expires": 300},
    },
    # Hourly: each business gets its summary once a day, at 20:00 in its own time zone.
    "daily-summaries": {
        "task": "maintenance.send_daily_summaries",
        "schedule": crontab(minute=2),
        "kwargs": dict(BEAT),
        "options": {"expires": 3000},
    },
    "retry-failed-notifications": {
        "task": "maintenance.retry_failed_notifications",
        "schedule": timedelta(minutes=10),
        "kwargs": dict(BEAT),
        "options": {"expires": 600},
    },
    "cleanup": {
        "task": "maintenance.cleanup",
        "schedule": crontab(minute=17, hour=3),  # daily, at a quiet hour (UTC)
        "kwargs": dict(BEAT),
    },
}


def parse_schedule(raw: str) -> dict[str, dict[str, Any]]:
    """The `BEAT_SCHEDULE_JSON` format (see the module docstring); ValueError when malformed."""
    entries = json.loads(raw)
    if not isinstance(entries, dict):
        raise ValueError("BEAT_SCHEDULE_JSON must be a JSON object")
    schedule: dict[str, dict[str, Any]] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise ValueError(f"BEAT_SCHEDULE_JSON[{name!r}] needs a task name")
        if "every" in entry:
            every = float(entry["every"])
            if every <= 0:
                raise ValueError(f"BEAT_SCHEDULE_JSON[{name!r}].every must be positive")
            when: Any = timedelta(seconds=every)
        elif "cron" in entry:
            minute, hour, day_of_month, month, day_of_week = str(entry["cron"]).split()
            when = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month,
                           day_of_week=day_of_week)
        else:
            raise ValueError(f"BEAT_SCHEDULE_JSON[{name!r}] needs 'every' or 'cron'")
        schedule[name] = {"task": entry["task"], "schedule": when, "kwargs": dict(entry.get("kwargs") or BEAT)}
        if entry.get("expires"):
            schedule[name]["options"] = {"expires": float(entry["expires"])}
    return schedule


def load_schedule() -> dict[str, dict[str, Any]]:
    raw = os.environ.get("BEAT_SCHEDULE_JSON", "").strip()
    return parse_schedule(raw) if raw else DEFAULT_SCHEDULE


SCHEDULE = load_schedule()
