"""The web UI in headless Chromium (Debian's package, driven by Playwright) on a real API and workers:
development sign-in, a streamed chat reply with its receipt and the balance dropping by it, a refresh
mid-reply that still finishes, and a transaction's proof verified in the browser. Saves screenshots."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from decimal import Decimal
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
    )
    env.pop("AUTH_JWT_SECRET", None)
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "crit.log", name="crit", concurrency=1),
        worker("interactive", env=env, cwd=ROOT, log=logs / "work.log", name="chat", concurrency=2),
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
        for name in ("buy", "keys", "images"):
            page.goto(f"{base}/#/{name}")
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / f"{name}.png"))
        page.goto(f"{base}/api/docs")
        expect(page.locator(".swagger-ui").first).to_be_visible(timeout=15_000)
        page.screenshot(path=str(SHOTS / "api-docs.png"))
        browser.close()
    assert not errors, errors
