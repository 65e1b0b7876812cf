"""The admin API on the real database: roles, adjustments, look-ups, the audit log and its chain."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from orchestration.reports import audit
from orchestration.reports.tables import audit_log
from orchestration.services import Services
from tests.integration.api.conftest import admin_headers, assert_problem, bearer, make_token, new_user
from tests.support.processes import ROOT, child_env


def auditor_headers() -> dict[str, str]:
    """Headers of a fresh auditor (roles: [auditor])."""
    return bearer(make_token(roles=["auditor"]))


READS = (
    "/api/v1/admin/users?q=usr",
    "/api/v1/admin/jobs?status=queued",
    "/api/v1/admin/audit",
    "/api/v1/admin/dead-letters",
    "/api/v1/admin/payments",
    "/api/v1/admin/ledger/verify",
    "/api/v1/admin/ledger/checkpoints",
    "/api/v1/admin/reports/usage",
    "/api/v1/admin/reports/revenue?group_by=rail",
)


def _writes(user_id: str) -> list[tuple[str, dict[str, Any] | None]]:
    return [
        ("/api/v1/admin/adjustments", {"user_id": user_id, "credits": "1", "reason": "r"}),
        ("/api/v1/admin/grants", {"user_id": user_id, "credits": "1", "reason": "r"}),
        (f"/api/v1/admin/dead-letters/{uuid.uuid4().hex}/replay", None),
        (f"/api/v1/admin/payments/{uuid.uuid4().hex}/refund", {"reason": "r"}),
    ]


def assert_documented(client: FlaskClient, path: str, body: dict[str, Any]) -> None:
    """A POST's problem body is valid against the schema its OpenAPI document declares for that status."""
    document = client.get("/api/v1/openapi.json").json
    declared = document["paths"][path]["post"]["responses"][str(body["status"])]
    schema = declared["content"]["application/problem+json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[1]
    jsonschema.validate(body, {**document["components"]["schemas"][name],
                               "components": document["components"]})


def test_roles_user_403_auditor_reads_only_admin_all(client: FlaskClient) -> None:
    user, me = new_user(client)
    auditor, admin = auditor_headers(), admin_headers()
    for path in READS:
        assert_problem(client.get(path, headers=user), 403)
        assert client.get(path, headers=auditor).status_code == 200, path
        assert client.get(path, headers=admin).status_code == 200, path
    before = client.get(f"/api/v1/admin/users/{me['id']}", headers=auditor).json["balance"]
    for path, body in _writes(me["id"]):
        assert_problem(client.post(path, headers=user, json=body), 403)
        assert_problem(client.post(path, headers=auditor, json=body), 403)
    # Nothing the refused writes asked for happened.
    assert client.get(f"/api/v1/admin/users/{me['id']}", headers=admin).json["balance"] == before


def test_adjustment_is_idempotent_audited_and_checked(client: FlaskClient, services: Services) -> None:
    user, me = new_user(client, email="someone@example.com")
    admin = admin_headers()
    admin_id = client.get("/api/v1/me", headers=admin).json["id"]
    body = {"user_id": me["id"], "credits": "-12.5", "reason": "duplicate charge on ticket 42"}
    headers = {**admin, "Idempotency-Key": "adjust-1"}
    first = client.post("/api/v1/admin/adjustments", headers=headers, json=body)
    assert first.status_code == 201, first.json
    assert first.json["balance"] == {"posted": "987.5", "held": "0", "available": "987.5"}
    again = client.post("/api/v1/admin/adjustments", headers=headers, json=body)
    assert again.json == first.json
    assert_problem(
        client.post("/api/v1/admin/adjustments", headers=headers, json={**body, "credits": "1"}), 409
    )
    assert client.get("/api/v1/credits/balance", headers=user).json["posted"] == "987.5"
    # Bad input: a problem, and the balance stays.
    for bad in (
        {**body, "credits": 5},
        {**body, "credits": "0.0000001"},
        {**body, "reason": ""},
        {**body, "extra": 1},
        {"user_id": me["id"], "credits": "1"},
    ):
        assert_problem(client.post("/api/v1/admin/adjustments", headers=admin, json=bad), 422)
    assert_problem(
        client.post("/api/v1/admin/adjustments", headers=admin, json={**body, "credits": "0"}), 422
    )
    short = assert_problem(
        client.post("/api/v1/admin/adjustments", headers=admin, json={**body, "credits": "-5000"}), 402
    )
    assert (short["available"], short["required"]) == ("987.5", "5000")
    assert_documented(client, "/api/v1/admin/adjustments", short)
    assert_problem(
        client.post("/api/v1/admin/adjustments", headers=admin, json={**body, "user_id": "usr_x"}), 404
    )
    assert client.get("/api/v1/credits/balance", headers=user).json["posted"] == "987.5"
    # One audit row, naming the admin by id, the balance before and after, and nothing personal.
    rows = client.get(
        "/api/v1/admin/audit", headers=auditor_headers(), query_string={"target": f"user:{me['id']}"}
    ).json["items"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor_id"], row["actor_role"], row["action"]) == (admin_id, "admin", "adjustment.create")
    assert row["reason"] == "duplicate charge on ticket 42"
    assert row["before"]["balance"]["posted"] == 1000_000_000
    assert row["after"]["balance"]["posted"] == 987_500_000
    assert row["after"]["amount"] == -12_500_000
    assert "someone@example.com" not in str(rows)
    assert me["external_id"] not in str(rows)
    # The user's page shows the entry; the chain still verifies.
    overview = client.get(f"/api/v1/admin/users/{me['id']}", headers=admin).json
    assert overview["entries"][0]["amount"] == "-12.5"
    assert overview["balance"]["available"] == "987.5"
    verified = client.get("/api/v1/admin/ledger/verify", headers=admin).json
    assert verified["ok"]
    assert verified["audit"]["ok"]
    assert verified["audit"]["rows_checked"] >= 1


def test_grants_and_failed_actions_are_audited_once(client: FlaskClient) -> None:
    _, me = new_user(client)
    admin = {**admin_headers(), "Idempotency-Key": uuid.uuid4().hex}
    body = {"user_id": me["id"], "credits": "5", "reason": "goodwill"}
    for _ in range(2):
        assert client.post("/api/v1/admin/grants", headers=admin, json=body).status_code == 201
    assert_problem(client.post(f"/api/v1/admin/dead-letters/{uuid.uuid4().hex}/replay", headers=admin), 404)
    rows = client.get("/api/v1/admin/audit", headers=admin, query_string={"target": f"user:{me['id']}"}).json
    assert [row["action"] for row in rows["items"]] == ["grant.create"]
    failed = client.get(
        "/api/v1/admin/audit", headers=admin, query_string={"action": "dead_letter.replay"}
    ).json
    assert failed["items"] == []  # a refused action changed nothing and is not recorded as done


def test_find_users_and_jobs_by_status(client: FlaskClient, services: Services) -> None:
    user, me = new_user(client, email=f"{uuid.uuid4().hex[:8]}@finder.test")
    admin = admin_headers()
    found = client.get("/api/v1/admin/users", headers=admin, query_string={"q": me["email"][:8].upper()}).json
    assert [item["id"] for item in found["items"]] == [me["id"]]
    assert_problem(client.get("/api/v1/admin/users", headers=admin), 422)
    assert_problem(client.get("/api/v1/admin/users/usr_nobody", headers=admin), 404)
    created = client.post("/api/v1/diagnostics/jobs", headers=user, json={"steps": 1})
    assert created.status_code == 202, created.json
    page = client.get(
        "/api/v1/admin/jobs", headers=admin, query_string={"status": "queued", "user_id": me["id"]}
    ).json
    assert [item["id"] for item in page["items"]] == [created.json["job_id"]]
    assert "result" not in page["items"][0]
    assert page["items"][0]["user_id"] == me["id"]
    assert_problem(client.get("/api/v1/admin/jobs", headers=admin, query_string={"status": "lost"}), 422)


def test_audit_pages_with_a_cursor(client: FlaskClient) -> None:
    _, me = new_user(client)
    admin = admin_headers()
    for n in range(3):
        body = {"user_id": me["id"], "credits": str(n + 1), "reason": f"r{n}"}
        assert client.post("/api/v1/admin/adjustments", headers=admin, json=body).status_code == 201
    query = {"target": f"user:{me['id']}", "limit": 2}
    first = client.get("/api/v1/admin/audit", headers=admin, query_string=query).json
    assert [row["reason"] for row in first["items"]] == ["r2", "r1"]
    second = client.get(
        "/api/v1/admin/audit", headers=admin, query_string={**query, "cursor": first["next_cursor"]}
    ).json
    assert [row["reason"] for row in second["items"]] == ["r0"]
    assert second["next_cursor"] is None
    assert_problem(client.get("/api/v1/admin/audit", headers=admin, query_string={"cursor": "bogus"}), 422)


def test_audit_log_is_append_only_and_its_chain_names_a_forgery(engine: Engine, tmp_path: Path) -> None:
    actor = audit.Actor("usr_admin")
    with engine.begin() as db:
        for n in range(3):
            audit.record(
                db,
                actor=actor,
                action="test.action",
                target=f"t:{n}",
                before={"n": n},
                after={"n": n + 1, "prompt": "never stored", "email": "x@y.z"},
            )
    with engine.connect() as db:
        assert audit.verify(db).as_dict() == {
            "ok": True,
            "rows_checked": 3,
            "first_bad_seq": None,
            "problems": [],
        }
        stored = db.execute(select(audit_log.c.after).where(audit_log.c.seq == 1)).scalar_one()
        assert stored == '{"n":1}'
    for statement in (update(audit_log).values(reason="edited"), text("DELETE FROM admin_audit")):
        with pytest.raises(DatabaseError), engine.begin() as db:
            db.execute(statement)
    with engine.begin() as db:  # a row written around the chain (insert is what the trigger allows)
        db.execute(
            audit_log.insert().values(
                seq=4,
                actor_id="usr_mallory",
                actor_role="admin",
                action="grant.create",
                target="user:x",
                before="null",
                after="null",
                created_at=db.execute(select(audit_log.c.created_at)).first()[0],
                hash=bytes(32),
            )
        )
    with engine.connect() as db:
        report = audit.verify(db)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert report.problems == [{"code": "hash_mismatch", "seq": 4}]
    # `creditflow ledger verify` checks the same chain and fails on it.
    env = child_env(
        DATABASE_URL=engine.url.render_as_string(hide_password=False),
        LEDGER_SIGNING_KEY="hmac:admin-suite-ledger-key-0123456789",
        VAR_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ledger", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "first bad audit row: 4" in done.stdout
    assert "3 audit rows" not in done.stdout
