"""docker-compose.yml: real subcommands, every queue served, grace periods, restart policies, Flower and
ledger keys guarded."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

import celeryconfig
from cli.main import build_parser
from tests.support.processes import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = {
    name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "creditflow:latest"
}


def test_compose_has_one_pool_per_queue_group() -> None:
    expected = {"migrate", "api", "beat", "flower"} | {f"worker-{queue}" for queue in celeryconfig.QUEUES}
    assert expected <= set(APP_SERVICES)
    assert {"postgres", "redis"} <= set(COMPOSE["services"])


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_command_is_a_creditflow_subcommand(name: str) -> None:
    command: list[str] = APP_SERVICES[name]["command"]
    assert command[0] == "creditflow"
    args: Any = build_parser().parse_args(command[1:])  # exits (fails the test) on a bad command
    if args.command == "worker":
        queues = args.queues.split(",")
        assert set(queues) <= set(celeryconfig.QUEUES), queues
        assert name == f"worker-{queues[0]}", "a service per queue, so each scales alone"


def test_every_queue_has_a_worker_service() -> None:
    served = set()
    for svc in APP_SERVICES.values():
        args = build_parser().parse_args(svc["command"][1:])
        if args.command == "worker":
            served |= set(args.queues.split(","))
    assert served == set(celeryconfig.QUEUES)


def test_app_services_get_database_and_redis_and_secrets() -> None:
    for name, svc in APP_SERVICES.items():
        env = svc["environment"]
        for variable in ("DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET", "PUBLIC_URL"):
            assert env.get(variable), f"{name} lacks {variable}"
        assert env.get("LEDGER_SIGNING_KEY") or env.get("LEDGER_VERIFY_KEY"), f"{name} lacks a ledger key"


def _seconds(duration: str) -> int:
    """A compose duration such as `90s`, `6m` or `1m30s`, in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration, "empty duration"
    assert parts, f"not a compose duration: {duration!r}"
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


@pytest.mark.parametrize("queue", celeryconfig.QUEUES)
def test_workers_get_a_stop_grace_period_past_their_time_limit(queue: str) -> None:
    # A deploy sends SIGTERM: Celery's warm shutdown lets running tasks finish only within this grace.
    grace = _seconds(APP_SERVICES[f"worker-{queue}"]["stop_grace_period"])
    _soft, hard = celeryconfig.QUEUE_LIMITS[queue]
    assert grace >= hard + 30, (queue, grace, hard)


def test_long_agent_tasks_get_a_long_grace_and_chat_a_short_one() -> None:
    agents = _seconds(APP_SERVICES["worker-agents"]["stop_grace_period"])
    interactive = _seconds(APP_SERVICES["worker-interactive"]["stop_grace_period"])
    assert agents >= 30 * 60
    assert interactive <= agents / 3  # the interactive limit, not the agents' one


def test_flower_is_published_on_loopback_only_and_needs_logins() -> None:
    flower = APP_SERVICES["flower"]
    for port in flower["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    args = build_parser().parse_args(flower["command"][1:])
    assert args.address == "0.0.0.0"  # inside its container: creditflow flower then insists on the logins


def test_the_api_gets_the_verification_key_and_never_the_signing_key() -> None:
    env = APP_SERVICES["api"]["environment"]
    assert env["LEDGER_SIGNING_KEY"] == ""
    assert env["LEDGER_VERIFY_KEY"].startswith("${LEDGER_VERIFY_KEY:?")
    sealer = APP_SERVICES["worker-maintenance"]["environment"]
    assert sealer["LEDGER_SIGNING_KEY"].startswith("${LEDGER_SIGNING_KEY")
    for name, svc in APP_SERVICES.items():
        assert svc["environment"]["PUBLIC_URL"].startswith("${PUBLIC_URL:?"), name


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_long_running_services_come_back_when_they_die_and_migrate_runs_once(name: str) -> None:
    policy = str(COMPOSE["services"][name].get("restart", "no"))
    if name == "migrate":  # one-shot: the others wait for it to complete successfully
        assert policy == "no", policy
    else:
        assert policy in ("unless-stopped", "always"), f"{name} stays dead after a crash: restart {policy!r}"
