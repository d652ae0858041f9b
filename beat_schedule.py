"""What beat runs, and when. Beat uses celery-redbeat: a lock in Redis lets only one beat
process act at a time, so a second one (a redeploy, a mistake) cannot fire a job twice."""

from celery.schedules import crontab

SCHEDULE = {
    "cleanup": {
        "task": "maintenance.cleanup",
        "schedule": crontab(minute=17, hour=3),  # daily, at a quiet hour (UTC)
        "kwargs": {"actor": "beat"},
    },
}
