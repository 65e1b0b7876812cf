"""Receipts on real workers: the final event and the ended job name the ledger entry that settled it."""

from __future__ import annotations

from pathlib import Path

import pytest

import ledger
from orchestration.services import Services
from tests.integration.jobs.test_http import api, get, post_job, read_all, token  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("workers")]


def _entry(api: str, bearer: str, entry_id: str) -> dict[str, object]:  # noqa: F811 - api is the fixture
    items = get(api, bearer, "/api/v1/credits/transactions?limit=200").json()["items"]
    return next(item for item in items if item["id"] == entry_id)


def test_receipts_of_succeeded_and_failed_jobs(
    api: str,  # noqa: F811 - the fixture imported above
    services: Services,
    job_env: dict[str, str],
) -> None:
    bearer = token()
    accepted = post_job(api, bearer, steps=3, cost_per_step="0.5").json()
    events = read_all(api, bearer, accepted["events_url"])
    final = events[-1].data
    assert final["type"] == "result"
    receipt = final["receipt"]
    # Diagnostic jobs hold exactly their cost.
    assert receipt["charged"] == "1.5"
    assert receipt["released"] == "0"
    assert receipt["price_version"]
    assert "sealed_in" not in receipt
    entry = _entry(api, bearer, receipt["entry_id"])
    # The receipt's hash is the chained hash of the capture entry the history shows, the charge its amount.
    assert entry["kind"] == "capture"
    assert entry["hash"] == receipt["entry_hash"]
    assert entry["amount"] == "-1.5"
    job = get(api, bearer, accepted["status_url"]).json()
    assert job["receipt"] == receipt

    failed = post_job(api, bearer, steps=3, cost_per_step="1", fail_at_step=2).json()
    final = read_all(api, bearer, failed["events_url"])[-1].data
    assert final["type"] == "failed"
    assert final["receipt"]["charged"] == "0"
    assert final["receipt"]["released"] == failed["cost"]["held"]
    assert _entry(api, bearer, final["receipt"]["entry_id"])["kind"] == "void"

    # Once sealed, the job answers the checkpoint too, and the proof of that entry verifies.
    key = Path(job_env["VAR_DIR"], "ledger_signing_key.pem").read_text()
    with services.uow() as session:
        checkpoint = ledger.seal(session, signer=ledger.signer_from_key(key))
    assert checkpoint is not None
    sealed = get(api, bearer, accepted["status_url"]).json()["receipt"]
    assert sealed["sealed_in"] == checkpoint.number
    assert {k: v for k, v in sealed.items() if k != "sealed_in"} == receipt
    proof = get(api, bearer, f"/api/v1/credits/transactions/{receipt['entry_id']}/proof").json()
    assert proof["entry_hash"] == receipt["entry_hash"]
    assert ledger.verify_proof(proof, key)
