"""RabbitMQ as the broker, on a private node configured by deploy/rabbitmq/rabbitmq.conf: the work
queues are quorum queues, the consumer timeout outlasts the longest task, a job runs through it, and a
worker killed whole mid-job (main process and pool) has its message handed out again at once (RabbitMQ
requeues what a dead connection held unacked): another worker takes the job over once the dead one's
heartbeat stood still, and it ends succeeded, charged once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.accounts.users import get_or_create_user
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.settings import load_settings
from tests.integration.jobs.conftest import diagnostic_job, hold_entries, job_row, wait_final
from tests.support.brokers import PrivateRabbitMQ, rabbitmq_installed
from tests.support.processes import ROOT, child_env, worker
from tests.support.waiting import wait_for

RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
HEARTBEAT = {"JOB_HEARTBEAT_S": "0.5", "JOB_HEARTBEAT_TIMEOUT_S": "3"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not rabbitmq_installed(), reason="RabbitMQ is not installed on this machine"),
]


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    """A private node with the deployment's rabbitmq.conf."""
    base = tmp_path_factory.mktemp("rabbit")
    shutil.copy(ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf", base / "rabbitmq.conf")
    node = PrivateRabbitMQ(base).start()
    try:
        yield node
    finally:
        node.stop()


def _ctl(node: PrivateRabbitMQ, *args: str) -> str:
    done = subprocess.run(
        [RABBITMQCTL, "-n", node.env["RABBITMQ_NODENAME"], "-q", *args],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_jobs_run_on_quorum_queues_and_a_killed_workers_job_is_taken_over_and_charged_once(
    rabbit: PrivateRabbitMQ, redis_url: str, module_database_url: str, tmp_path: Path
) -> None:
    env = child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        BROKER_URL=rabbit.url,
        VAR_DIR=str(tmp_path / "var"),
        CREDITFLOW_ENV="test",
        CANARY_QUEUES="",
        BROKER_QUORUM_QUEUES="true",
        **HEARTBEAT,
    )
    settings = load_settings(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        BROKER_URL=rabbit.url,
        BROKER_QUORUM_QUEUES=True,
        JOB_HEARTBEAT_S=0.5,
        JOB_HEARTBEAT_TIMEOUT_S=3.0,
    )
    services: Services = bootstrap(settings)
    try:
        with services.uow() as db:
            user = get_or_create_user(db, external_id=f"rabbit-{os.getpid()}-{tmp_path.name}").id
        logs = {name: tmp_path / f"{name}.log" for name in ("a1", "a2")}
        with (
            worker("critical", env=env, cwd=ROOT, log=tmp_path / "crit.log", name="crit"),
            worker(
                "agents", env=env, cwd=ROOT, log=logs["a1"], pool="prefork", concurrency=1, name="a1"
            ) as a1,
            worker(
                "agents", env=env, cwd=ROOT, log=logs["a2"], pool="prefork", concurrency=1, name="a2"
            ) as a2,
        ):
            types = dict(
                line.split("\t") for line in _ctl(rabbit, "list_queues", "name", "type").splitlines()
            )
            assert types["agents"] == types["critical"] == "quorum", types
            timeout = _ctl(rabbit, "eval", "application:get_env(rabbit, consumer_timeout).").strip()
            assert timeout == "{ok,2400000}", timeout

            quick = diagnostic_job(services, user, queue="agents", steps=3, sleep_ms=50, cost_per_step=100)
            row = wait_final(services, quick, timeout=60)
            assert (row.status, row.cost_charged) == ("succeeded", 300)

            before = {name: _runs(log) for name, log in logs.items()}
            long = diagnostic_job(
                services, user, queue="agents", steps=80, sleep_ms=100, cost_per_step=100, time_limit_s=600
            )
            wait_for(lambda: job_row(services, long).progress is not None, timeout=60, what="the job running")
            runner = next(name for name, log in logs.items() if _runs(log) > before[name])
            os.killpg({"a1": a1, "a2": a2}[runner].pid, signal.SIGKILL)  # main process and pool child at once
            row = wait_final(services, long, timeout=90)
            other = "a2" if runner == "a1" else "a1"
            assert _runs(logs[other]) > before[other], "the other worker got the message again"
    finally:
        services.close()
    assert row.status == "succeeded", row.error
    assert row.attempts >= 2  # taken over by the other worker's delivery
    assert row.result["steps_done"] == 80
    assert row.cost_charged == 80 * 100  # charged once, for one complete run
    assert hold_entries(services, row.hold_id) == ["hold", "capture"]


def _runs(log: Path) -> int:
    """How many `run` messages of the agents queue this worker received."""
    return log.read_text(errors="replace").count("creditflow.agents.run[") if log.exists() else 0
