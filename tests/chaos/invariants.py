"""What must hold after any schedule of faults, read from the database the stack wrote."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine, func, select

import ledger
from assistant.tables import messages
from ledger.tables import accounts, entries, holds
from orchestration.tables import dead_letters, jobs

ENDED = ("succeeded", "failed", "canceled")
RESOLVING = ("capture", "void", "expire")


def problems(engine: Engine, chats: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """Every broken promise found (empty: all kept), and what the jobs ended as.

    `chats` maps each chat job to the text it sent (the echo model answers "You said: <text>")."""
    found: list[str] = []
    with engine.connect() as db:
        rows = db.execute(select(jobs)).mappings().all()
        outcomes = Counter(
            f"{row['kind']} {row['status']}" + (f" ({row['error']['code']})" if row["error"] else "")
            for row in rows
        )
        found += [f"job {row['id']} still {row['status']}" for row in rows if row["status"] not in ENDED]
        found += _holds(db, rows)
        found += _once(db, rows, chats)
        found += _books(db)
        letters = (
            db.execute(select(dead_letters).where(dead_letters.c.replayed_at.is_(None))).mappings().all()
        )
        found += [f"dead letter {d['task_name']} {d['reason']}: {d['error'][:200]}" for d in letters]
    return found, outcomes


def _holds(db: Any, rows: Any) -> list[str]:
    """Each job's hold resolved exactly once: held = captured + released, the charge as recorded."""
    found = []
    resolutions = Counter(
        db.execute(select(entries.c.hold_id).where(entries.c.kind.in_(RESOLVING))).scalars()
    )
    by_id = {row["id"]: row for row in db.execute(select(holds)).mappings()}
    for job in rows:
        hold = by_id.get(job["hold_id"])
        if hold is None:
            found.append(f"job {job['id']} has no hold")
            continue
        if hold["status"] == "pending" or resolutions[hold["id"]] != 1:
            found.append(
                f"hold of job {job['id']}: {hold['status']}, resolved {resolutions[hold['id']]} times"
            )
        charged, released = job["cost_charged"] or 0, job["cost_released"] or 0
        if job["status"] in ENDED and (charged + released != hold["amount"] or charged != hold["captured"]):
            found.append(
                f"job {job['id']}: held {hold['amount']} != charged {charged} + released {released} "
                f"(hold captured {hold['captured']})"
            )
    return found


def _once(db: Any, rows: Any, chats: dict[str, str]) -> list[str]:
    """No AI step ran twice: one reply per chat turn, exactly the model's; no step charged twice."""
    found = []
    replies = db.execute(
        select(messages.c.job_id, messages.c.content).where(messages.c.role == "assistant")
    ).all()
    per_job = Counter(job_id for job_id, _content in replies)
    text = dict(replies)
    for job in rows:
        if job["kind"] == "chat":
            if per_job[job["id"]] > 1:
                found.append(f"chat job {job['id']} has {per_job[job['id']]} replies")
            if job["status"] == "succeeded" and text.get(job["id"]) != f"You said: {chats[job['id']]}":
                found.append(f"chat job {job['id']} replied {text.get(job['id'])!r}")
        elif job["kind"] == "diagnostic":
            steps, cost = int(job["params"]["steps"]), int(job["params"]["cost_per_step"])
            if (job["cost_charged"] or 0) > steps * cost:
                found.append(f"diagnostic job {job['id']} charged {job['cost_charged']} > {steps} x {cost}")
    return found


def _books(db: Any) -> list[str]:
    """Every account together sums to zero."""
    users = db.execute(select(func.coalesce(func.sum(accounts.c.posted), 0)).where(accounts.c.kind == "user"))
    total = int(users.scalar_one()) + sum(ledger.system_balances(db).values())
    return [] if total == 0 else [f"the books sum to {total}, not 0"]
