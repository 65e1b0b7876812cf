"""Logging of the API process: one format for gunicorn's and the app's records, at LOG_LEVEL.

Applied by gunicorn's logger class right after gunicorn set up its own loggers (in the master, before
it forks, and again on a reload), so every worker inherits it; the app's loggers (`api.*`,
`orchestration.*`, ...) and gunicorn's propagate to the one root handler. Not gunicorn's
`logconfig_dict`: with it gunicorn formats an access line for every request even without --access-log.
Celery's processes log through Celery (`--loglevel`), in Celery's own format.
"""

from __future__ import annotations

import logging.config
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
            # gunicorn writes access lines only with `creditflow api --access-log`; then at any level.
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


def gunicorn_logger(level: str) -> type:
    """gunicorn's logger class, with our configuration applied after its own setup."""
    from gunicorn.glogging import Logger

    class CreditflowLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            logging.config.dictConfig(api_logging(level))

    return CreditflowLogger
