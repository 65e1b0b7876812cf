"""Flask app factory: config, extensions, blueprints, error handlers."""

from __future__ import annotations

import dataclasses
import sys

from flask import Flask

import ledger
from api.errors import ProblemApi, register_error_handlers
from api.metrics import init_metrics
from api.openai.routes import init_openai_api
from api.ops import ops
from api.ratelimit import init_rate_limits
from api.services import VERIFIER
from api.ui.pages import SWAGGER_UI_URL, init_ui
from api.v1 import register_v1
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.settings import Settings, get_settings

MAX_BODY_BYTES = 1 * 1024 * 1024
# py_ecc (imported by eth-account, for SIWE) raises the interpreter's recursion limit to 100000: deeply
# nested input then overflows the C stack and kills the worker process instead of raising RecursionError.
RECURSION_LIMIT = 1000  # Python's default


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the WSGI app; connections come from `services` (bootstrap builds them lazily)."""
    sys.setrecursionlimit(RECURSION_LIMIT)  # after every import: see RECURSION_LIMIT
    settings = settings or (services.settings if services else get_settings())
    services = services or bootstrap(settings)
    # The API verifies checkpoints and never signs: it keeps the verifier, not the signing key.
    key = settings.LEDGER_VERIFY_KEY or settings.LEDGER_SIGNING_KEY
    verifier = ledger.verifier_from_key(key) if key else None
    settings = settings.model_copy(update={"LEDGER_SIGNING_KEY": ""})
    services = dataclasses.replace(services, settings=settings)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="creditflow",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_URL,  # vendored: the docs work offline
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    app.extensions["creditflow"] = services
    app.extensions[VERIFIER] = verifier
    api = ProblemApi(app)
    register_error_handlers(app, api)
    app.register_blueprint(ops)
    init_ui(app)
    register_v1(app, api, settings)
    init_openai_api(app)
    if settings.METRICS_ENABLED:
        init_metrics(app)
    init_rate_limits(app, settings)  # last: it looks at every registered view
    return app
