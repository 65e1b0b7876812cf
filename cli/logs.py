"""Logging of the API process: one format for gunicorn's and the app's records, at LOG_LEVEL.

Handed to gunicorn as `logconfig_dict`, so the master configures it before forking and every worker
inherits it; the app's loggers (`api.*`, `orchestration.*`, ...) propagate to the root handler.
Celery's processes log through Celery (`--loglevel`), in Celery's own format.
"""

from __future__ import annotations

from typing import Any

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def api_logging(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the API: everything to stderr, one format, root at `level`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"creditflow": {"format": FORMAT}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "creditflow", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # gunicorn's own handlers are dropped: its records reach the root handler, in our format.
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # The access log is on only with `creditflow api --access-log`; then it shows at any level.
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }
