"""Celery app and thin tasks, one module per queue: they turn ids into domain calls."""
