"""The web UI in headless Chromium (Debian's package, driven by Playwright) on a real API and workers:
development sign-in, a streamed chat reply with its receipt and the balance dropping by it, a refresh
mid-reply that still finishes, and a transaction's proof verified in the browser; an agent task started
with its cost preview and canceled from the page (its hold released), an image generated into the gallery,
a personal spending limit refusing a job, and a webhook endpoint with its deliveries. Saves screenshots."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import ledger
from orchestration.bootstrap import bootstrap
from runtime.settings import load_settings
from tests.support.processes import ROOT, api_server, child_env, worker

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]
SHOTS = ROOT / "tests" / "e2e" / "screenshots"
WORDS = " ".join(f"word{i}" for i in range(40))
FERNET_KEY = "B0XDeURUlrj2dCkaNEkrruXVHaNIPR_JmIkoSV6Casg="  # test-only webhook secret encryption key


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that accepts every delivery."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()


@pytest.fixture(scope="module")
def stack(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Workers and `creditflow api` on the embedded default secret (no AUTH_JWT_SECRET: dev sign-in is on)."""
    var = tmp_path_factory.mktemp("var")
    env = child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        VAR_DIR=str(var),
        CREDITFLOW_ENV="test",
        ECHO_TOKEN_DELAY_MS="100",
        RATE_LIMIT_JOBS="1000/minute",
        API_WORKERS="1",
        SSE_HEARTBEAT_S="1",
        IMAGE_STORAGE_DIR=str(var / "images"),
        WEBHOOK_SECRET_KEY=FERNET_KEY,
        OUTBOUND_ALLOW_LOOPBACK="true",  # the webhook receiver below listens on 127.0.0.1
    )
    env.pop("AUTH_JWT_SECRET", None)
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "crit.log", name="crit", concurrency=1),
        worker("interactive,agents,notify", env=env, cwd=ROOT, log=logs / "io.log", name="io", concurrency=4),
        worker("local", env=env, cwd=ROOT, log=logs / "local.log", name="local", concurrency=1),
        api_server(env=env, log=logs / "api.log") as base,
    ):
        yield base, var


def test_sign_in_chat_refresh_and_verify_in_the_browser(
    stack: tuple[str, Path], database_url: str, redis_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, var = stack
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {SHOTS}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/")
        page.screenshot(path=str(SHOTS / "sign-in.png"))
        page.fill("#dev-name", f"e2e{int(time.time())}")
        page.click("#dev-sign-in")
        balance = page.get_by_test_id("balance")
        expect(balance).to_have_text("1000", timeout=15_000)
        page.click("#new-conversation")
        expect(page.locator("#prompt")).to_be_visible()

        # A streamed reply: tokens arrive, then its receipt; the live balance drops by the charge.
        page.fill("#prompt", "hello there")
        page.click("#send")
        receipt = page.get_by_test_id("receipt").last
        expect(receipt).to_contain_text("Charged", timeout=30_000)
        charged = Decimal(receipt.inner_text().split("Charged ")[1].split(" ")[0])
        assert charged > 0
        expect(balance).to_have_text(str(Decimal(1000) - charged).rstrip("0").rstrip("."), timeout=15_000)
        expect(page.locator("#conversation-total")).to_contain_text(str(charged))
        page.screenshot(path=str(SHOTS / "chat.png"))

        # Refresh mid-reply: the page finds the running job and resumes its stream to the end.
        page.fill("#prompt", WORDS)
        page.click("#send")
        reply = page.get_by_test_id("reply").last
        expect(reply).to_contain_text("word3", timeout=30_000)
        page.reload()
        expect(page.get_by_test_id("reply").last).to_contain_text("word39", timeout=60_000)
        expect(page.get_by_test_id("receipt")).to_have_count(2, timeout=30_000)
        assert "word0" in page.get_by_test_id("reply").last.inner_text()

        # Seal the ledger (as the maintenance beat does), then verify an entry's proof in the browser.
        key = (var / "ledger_signing_key.pem").read_text()
        services = bootstrap(load_settings(DATABASE_URL=database_url, REDIS_URL=redis_url))
        try:
            with services.uow() as session:
                assert ledger.seal(session, signer=ledger.signer_from_key(key)) is not None
        finally:
            services.close()
        page.goto(f"{base}/#/transactions")
        first = page.locator("tr[data-entry]").first
        expect(first).to_contain_text("sealed")
        first.locator("button.verify").click()
        outcome = first.locator(".verify-outcome")
        expect(outcome).to_contain_text("verified", timeout=15_000)
        expect(outcome).to_contain_text("Ed25519 signature")
        page.screenshot(path=str(SHOTS / "transactions.png"), full_page=True)
        for name in ("buy", "keys"):
            page.goto(f"{base}/#/{name}")
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / f"{name}.png"))
        page.goto(f"{base}/api/docs")
        expect(page.locator(".swagger-ui").first).to_be_visible(timeout=15_000)
        page.screenshot(path=str(SHOTS / "api-docs.png"))
        browser.close()
    assert not errors, errors


def test_agents_images_limit_and_webhooks_in_the_browser(stack: tuple[str, Path], receiver: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, _var = stack
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/")
        page.fill("#dev-name", f"jobs{int(time.time())}")
        page.click("#dev-sign-in")
        balance = page.get_by_test_id("balance")
        expect(balance).to_have_text("1000", timeout=15_000)

        # An agent task: its cost preview holds nothing; started, its steps show; canceled from the page.
        page.goto(f"{base}/#/agents")
        page.select_option("#agent-model", "echo")
        page.fill("#agent-prompt", "Research the history of lighthouses " + WORDS)
        page.fill("#agent-max", "5")
        page.click("#agent-preview")
        expect(page.get_by_test_id("quote")).to_contain_text("would hold 5 credits", timeout=15_000)
        expect(balance).to_have_text("1000")
        page.click("#agent-start")
        expect(page.locator("#agent-live .held")).to_contain_text("5 credits held", timeout=15_000)
        expect(page.locator("#balance-held")).to_contain_text("5 held", timeout=15_000)
        expect(page.get_by_test_id("steps").locator("li").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SHOTS / "agents-running.png"))
        page.click("#cancel-job")
        expect(page.get_by_test_id("job-status")).to_have_text("canceled", timeout=30_000)
        receipt = page.locator("#agent-live").get_by_test_id("receipt")
        expect(receipt).to_contain_text("released", timeout=15_000)
        charged = Decimal(receipt.inner_text().split("Charged ")[1].split(" ")[0])
        released = Decimal(receipt.inner_text().split("released ")[1].split(" ")[0])
        assert charged + released == 5
        expect(page.locator("#balance-held")).to_be_hidden(timeout=15_000)  # the hold is gone
        expect(balance).to_have_text(str(Decimal(1000) - charged).rstrip("0").rstrip("."), timeout=15_000)
        expect(page.get_by_test_id("agent-jobs")).to_contain_text("canceled", timeout=15_000)
        page.screenshot(path=str(SHOTS / "agents.png"), full_page=True)

        # An image with the local renderer: a cost preview, then the job; its thumbnail joins the gallery.
        page.goto(f"{base}/#/images")
        expect(page.locator("#image-model")).to_have_value("sketch-local")
        page.fill("#image-prompt", "a lighthouse on a cliff at dusk")
        page.select_option("#image-size", "256")
        page.fill("#image-steps", "8")
        page.click("#image-preview")
        expect(page.get_by_test_id("quote")).to_contain_text("would hold", timeout=15_000)
        page.click("#image-start")
        expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=60_000)
        expect(page.locator("#image-live").get_by_test_id("receipt")).to_contain_text("Charged")
        thumb = page.locator("#gallery").get_by_test_id("thumb").first
        expect(thumb).to_have_attribute("src", re.compile("^blob:"), timeout=15_000)
        assert thumb.evaluate("img => img.complete && img.naturalWidth > 0")
        page.screenshot(path=str(SHOTS / "images.png"), full_page=True)

        # A personal spending limit: saved in preferences, then a job past it is refused, nothing held.
        page.goto(f"{base}/#/preferences")
        page.fill("#pref-limit", "0.05")  # above what today took (~0.04), below one more image
        page.select_option("#pref-period", "day")
        page.click("#pref-save")
        expect(page.locator("#pref-out")).to_contain_text("0.05 credits per day", timeout=15_000)
        page.screenshot(path=str(SHOTS / "preferences.png"), full_page=True)
        before = balance.inner_text()
        page.goto(f"{base}/#/images")
        page.fill("#image-prompt", "another lighthouse")
        page.click("#image-start")
        expect(page.locator("#image-live .error")).to_contain_text("spending limit", timeout=15_000)
        expect(page.locator("#balance-held")).to_be_hidden()
        assert balance.inner_text() == before
        page.goto(f"{base}/#/preferences")
        page.fill("#pref-limit", "")
        page.click("#pref-save")
        expect(page.locator("#pref-out")).to_contain_text("No spending limit", timeout=15_000)

        # Webhooks: an endpoint (its secret shown once), a test delivery that arrives, a replay, a rotation.
        page.goto(f"{base}/#/webhooks")
        page.fill("#webhook-url", receiver)
        page.click("#webhook-create")
        expect(page.locator("#webhook-secret")).to_contain_text("whsec_", timeout=15_000)
        row = page.locator("tr[data-webhook]").first
        expect(row).to_contain_text("enabled")
        row.get_by_role("button", name="Send test").click()
        delivered = page.locator("tr[data-delivery]")
        for _ in range(30):  # bounded: the notify worker delivers within seconds
            if delivered.count() and "succeeded" in delivered.first.inner_text():
                break
            page.wait_for_timeout(500)
            page.goto(f"{base}/#/agents")
            page.goto(f"{base}/#/webhooks")
            page.wait_for_timeout(300)
        expect(delivered.first).to_contain_text("succeeded")
        delivered.first.get_by_role("button", name="Replay").click()
        expect(page.locator("tr[data-delivery]")).to_have_count(2, timeout=15_000)
        page.locator("tr[data-webhook]").first.get_by_role("button", name="Rotate secret").click()
        expect(page.locator("#webhook-out")).to_contain_text("New secret", timeout=15_000)
        page.screenshot(path=str(SHOTS / "webhooks.png"), full_page=True)
        browser.close()
    assert not errors, errors
