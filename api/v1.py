"""Wires the v1 account surface into the app: blueprints, bearer security scheme, request guards."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from api.account import api_keys, credits, me
from api.admin import audit as admin_audit
from api.admin import reports as admin_reports
from api.admin import routes as admin
from api.admin import users as admin_users
from api.auth import routes as auth_routes
from api.chat import routes as chat
from api.dry_run import register_dry_run
from api.errors import ProblemApi
from api.guards import register_guards
from api.images import routes as images
from api.images import vision
from api.jobs import admin as job_admin
from api.jobs import agents
from api.jobs import routes as jobs
from api.ledger_errors import register_ledger_errors
from api.links import register_links
from api.money import Credits
from api.notify import routes as webhooks
from api.payments import admin as payment_admin
from api.payments import routes as payments
from api.ui import config as ui_config
from runtime.settings import Settings


def register_v1(app: Flask, api: ProblemApi, settings: Settings) -> None:
    """Register /me, /credits, /api-keys, /auth and /admin with their shared guards."""
    if settings.TRUSTED_PROXIES:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.TRUSTED_PROXIES, x_proto=settings.TRUSTED_PROXIES,
            x_host=settings.TRUSTED_PROXIES,
        )
    api.spec.components.security_scheme(
        "bearerAuth",
        {"type": "http", "scheme": "bearer", "description": "creditflow JWT, OIDC ID token or API key"},
    )
    api.register_field(Credits, "string", "decimal")
    register_ledger_errors(app)
    jobs.register_job_errors(app)
    register_dry_run(app)
    payments.register_payment_errors(app)
    webhooks.register_webhooks(app, api)
    register_links(api.spec)
    for blueprint in (me.blp, credits.blp, api_keys.blp, auth_routes.blp, admin.blp, jobs.blp, job_admin.blp,
                      chat.blp, agents.blp, images.blp, vision.blp, payments.blp, payments.me_blp,
                      payment_admin.blp, webhooks.blp, admin_users.blp, admin_reports.blp, admin_audit.blp,
                      ui_config.blp):
        api.register_blueprint(blueprint)
    vision.document_one_image(api.spec)
    register_guards(app, api)
