"""`/` and `/ui/...`: the web application's page and its static assets, with cache headers and a CSP."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, request, send_from_directory

STATIC = Path(__file__).parent / "static"
# Everything from our own origin; no inline script or style (the page has none), no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI's page (flask-smorest's template) starts the bundle with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
)
# Assets are revalidated after a short while (no build step stamps their names); vendored ones are pinned.
ASSET_MAX_AGE_S = 300
VENDOR_MAX_AGE_S = 7 * 24 * 3600
SWAGGER_UI_URL = "/ui/vendor/swagger-ui/"

ui = Blueprint("ui", __name__)


@ui.get("/")
def index() -> Response:
    """The web application (one page; its modules route by the URL fragment)."""
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@ui.get("/ui/<path:name>")
def asset(name: str) -> Response:
    """A static asset of the web application (404 outside the static folder)."""
    max_age = VENDOR_MAX_AGE_S if name.startswith("vendor/") else ASSET_MAX_AGE_S
    return send_from_directory(STATIC, name, max_age=max_age)


def _secure(response: Response) -> Response:
    if request.path == "/" or request.path.startswith("/ui/"):
        response.headers.setdefault("Content-Security-Policy", CSP)
    elif request.path.startswith("/api/docs"):
        response.headers.setdefault("Content-Security-Policy", DOCS_CSP)
    else:
        return response
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def init_ui(app: Flask) -> None:
    """Serve the web application and the offline Swagger UI's assets."""
    app.register_blueprint(ui)
    app.after_request(_secure)
