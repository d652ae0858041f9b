"""Celery tasks. Start workers with `celery -A tasks worker -Q <queue>`."""

from tasks.app import app

__all__ = ["app"]
