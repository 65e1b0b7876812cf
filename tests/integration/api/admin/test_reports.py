"""Usage and revenue reports: their sums are the ledger's, in JSON and CSV, and bad asks are problems."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

from flask.testing import FlaskClient

import ledger
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from tests.integration.api.conftest import admin_headers, assert_problem, bearer, make_token, new_user

ALL_TIME = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
MICRO = 1_000_000


def _charged_job(services: Services, user_id: str, charge: int) -> str:
    """A diagnostic job whose hold is captured for `charge` micro-credits (what settle books)."""
    row, _ = job_cases.create_job(
        services,
        job_cases.CreateJob(
            user_id=user_id, kind="diagnostic", params={"steps": 1, "cost_per_step": 5 * MICRO}
        ),
    )
    with services.uow(account_of=user_id) as db:
        ledger.capture(db, hold_id=row.hold_id, amount=charge, idempotency_key=f"test-capture:{row.id}")
    return str(row.id)


def _credits(text: str) -> int:
    return int(Decimal(text) * MICRO)


def test_usage_sums_are_the_ledgers(client: FlaskClient, services: Services) -> None:
    admin = admin_headers()
    _, alice = new_user(client)
    _, bob = new_user(client)
    charges = {alice["id"]: [1_500_000, 250_000], bob["id"]: [3_000_000]}
    for user_id, amounts in charges.items():
        for amount in amounts:
            _charged_job(services, user_id, amount)
    by_user = client.get(
        "/api/v1/admin/reports/usage", headers=admin, query_string={**ALL_TIME, "group_by": "user,kind"}
    ).json
    rows = {row["user"]: row for row in by_user["items"]}
    for user_id, amounts in charges.items():
        assert _credits(rows[user_id]["charged"]) == sum(amounts)
        assert rows[user_id]["entries"] == len(amounts)
        assert rows[user_id]["kind"] == "diagnostic"
    with services.uow(autocommit=True) as db:
        revenue = ledger.system_balances(db)["revenue"]
    # Every capture ever is in the report once: its total is the revenue account's derived balance.
    assert _credits(by_user["total"]["charged"]) == revenue
    for groups in ("day", "model", "kind", "api_key", "day,model,kind,user,api_key"):
        other = client.get(
            "/api/v1/admin/reports/usage", headers=admin, query_string={**ALL_TIME, "group_by": groups}
        ).json
        assert _credits(other["total"]["charged"]) == revenue, groups
        assert sum(_credits(row["charged"]) for row in other["items"]) == revenue, groups
    # CSV: the same rows, credits as decimal strings.
    answer = client.get(
        "/api/v1/admin/reports/usage",
        headers={**admin, "Accept": "text/csv"},
        query_string={**ALL_TIME, "group_by": "user"},
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert set(table[0]) == {"user", "entries", "charged"}
    assert sum(_credits(row["charged"]) for row in table) == revenue
    assert {row["user"]: row["charged"] for row in table}[alice["id"]] == "1.75"


def test_revenue_by_rail_is_the_rail_accounts(client: FlaskClient, services: Services) -> None:
    admin = admin_headers()
    _, me = new_user(client)
    with services.uow(account_of=me["id"]) as db:
        for rail, amount in (("stripe", 10 * MICRO), ("paypal", 4 * MICRO), ("crypto", 2 * MICRO)):
            ledger.purchase(
                db,
                user_id=me["id"],
                amount=amount,
                rail=rail,
                reference=f"p:{rail}",
                idempotency_key=f"test-buy:{uuid.uuid4().hex}",
            )
        ledger.refund(
            db,
            user_id=me["id"],
            amount=3 * MICRO,
            rail="stripe",
            reference="r",
            idempotency_key=f"test-refund:{uuid.uuid4().hex}",
        )
    report = client.get(
        "/api/v1/admin/reports/revenue", headers=admin, query_string={**ALL_TIME, "group_by": "rail"}
    ).json
    with services.uow(autocommit=True) as db:
        balances = ledger.system_balances(db)
    rows = {row["rail"]: row for row in report["items"]}
    for rail in ("stripe", "paypal", "crypto"):
        # What a rail brought in net sits (negated) on its system account.
        assert _credits(rows[rail]["net"]) == -balances[rail], rail
        assert _credits(rows[rail]["brought_in"]) - _credits(rows[rail]["taken_back"]) == _credits(
            rows[rail]["net"]
        )
    assert _credits(rows["stripe"]["taken_back"]) >= 3 * MICRO
    by_day = client.get(
        "/api/v1/admin/reports/revenue", headers=admin, query_string={**ALL_TIME, "group_by": "day,rail"}
    ).json
    assert by_day["total"] == report["total"]


def test_report_bad_asks_are_problems(client: FlaskClient) -> None:
    admin = admin_headers()
    for path, query in (
        ("usage", {"group_by": "planet"}),
        ("usage", {"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}),
        ("usage", {"from": "yesterday"}),
        ("usage", {"from": "2030-01-01T00:00:00"}),  # no offset: ambiguous
        ("revenue", {"group_by": "model"}),
    ):
        assert_problem(client.get(f"/api/v1/admin/reports/{path}", headers=admin, query_string=query), 422)
    user = bearer(make_token())
    assert_problem(client.get("/api/v1/admin/reports/usage", headers=user), 403)
    default = client.get("/api/v1/admin/reports/usage", headers=admin).json
    assert default["group_by"] == ["day"]
    query = {"group_by": "day,kind,day"}
    twice = client.get("/api/v1/admin/reports/usage", headers=admin, query_string=query)
    assert twice.json["group_by"] == ["day", "kind"]
