"""docker-compose.yml: parses, every command is a real subcommand, every queue exists."""

from __future__ import annotations

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
        for variable in ("DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET", "LEDGER_SIGNING_KEY"):
            assert env.get(variable), f"{name} lacks {variable}"
