"""The faults, each applied to the running stack and undone (the process started again, the server
back), returning a note of what it hit."""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil
import redis
from celery import Celery
from kombu import Connection
from sqlalchemy import Engine, select

import celeryconfig
from orchestration.tables import jobs
from tests.chaos.proxy import Proxy
from tests.chaos.stack import ChaosRedis, Stack
from tests.support.postgres_server import PrivateServer

IO_QUEUES = ("interactive", "agents", "images")
WARM_S = 30.0


class Faults:
    """Applies the plan's faults by name; `rng` (seeded) picks among equal targets."""

    def __init__(  # noqa: PLR0917 - the stack and each thing a fault acts on
        self,
        stack: Stack,
        redis: ChaosRedis,
        postgres: PrivateServer,
        links: tuple[Proxy, ...],
        engine: Engine,
        rng: random.Random,
    ) -> None:
        self.stack, self.redis, self.postgres, self.links = stack, redis, postgres, links
        self.engine, self.rng = engine, rng
        self.revived: list[str] = []  # processes found dead (and started again) while a fault looked
        self.producer = Celery("chaos-producer")
        self.producer.config_from_object(celeryconfig)
        self.producer.conf.update(broker_url=redis.url, result_backend=None)

    def apply(self, name: str) -> str:
        """Run fault `name`; what it hit."""
        action: Callable[[], str] = getattr(self, name)
        return action()

    def _running(self, queues: tuple[str, ...], wait_s: float = 6) -> list[str]:
        """Jobs running on `queues` (waiting a little for one, so the fault lands mid-job)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with self.engine.connect() as db:
                    query = select(jobs.c.id).where(jobs.c.status == "running", jobs.c.queue.in_(queues))
                    found = sorted(db.execute(query).scalars())
            except Exception:  # the database may be the thing just restarted
                found = []
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def kill_io_main(self) -> str:
        running = self._running(IO_QUEUES)
        self.stack.kill("io", signal.SIGKILL)
        self.stack.start("io")
        return f"{len(running)} jobs running"

    def kill_pool_child(self) -> str:
        deadline = time.monotonic() + 10
        while not (children := self._children("critical")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the pool is being replaced (a child just died, the worker restarts)
        if not children:
            return "no pool child to kill (the pool was restarting)"
        victim = self.rng.choice(sorted(children, key=lambda p: p.pid))
        victim.kill()
        return f"child {victim.pid} of {len(children)}"

    def _children(self, name: str) -> list[Any]:
        for exit_seen in self.stack.revive():
            self.revived.append(exit_seen)
        try:
            return self.stack.pool_children(name)
        except (AssertionError, psutil.Error):
            return []

    def kill_critical_main(self) -> str:
        self.stack.kill("critical", signal.SIGKILL)
        self.stack.start("critical")
        return "restarted"

    def term_io_warm(self) -> str:
        running = self._running(IO_QUEUES)
        started = time.monotonic()
        # Warm: running tasks (9 s at most here) finish first; past WARM_S it is killed, and noted.
        self.stack.kill("io", signal.SIGTERM, wait_s=WARM_S)
        took = time.monotonic() - started
        self.stack.start("io")
        ended = f"took {took:.1f} s" if took < WARM_S else f"did not end in {WARM_S:g} s: killed"
        return f"{len(running)} jobs running, warm shutdown {ended}"

    def restart_redis_empty(self) -> str:
        self.redis.kill()
        shutil.rmtree(self.redis.directory, ignore_errors=True)  # as a cache-only Redis loses it all
        time.sleep(1)
        self.redis.start(persist=True)
        return "queues, streams and slots lost"

    def restart_redis_kept(self) -> str:
        self.redis.kill()
        time.sleep(1)
        self.redis.start(persist=True)
        return "reloaded from its append-only file"

    def restart_postgres(self) -> str:
        running = self._running(IO_QUEUES, wait_s=3)
        self.postgres.restart()
        return f"{len(running)} jobs running"

    def pause_beat(self) -> str:
        self.stack.pause("beat", 8)
        return "beat stopped 8 s"

    def double_delivery(self) -> str:
        running = self._running(IO_QUEUES)
        if not running:
            return "no job running: nothing sent"
        job_id = self.rng.choice(running)
        with self.engine.connect() as db:
            queue = db.execute(select(jobs.c.queue).where(jobs.c.id == job_id)).scalar_one()
        self.producer.send_task(f"creditflow.{queue}.run", args=[job_id])
        return f"run of {job_id} sent again"

    def past_visibility(self) -> str:
        """A running job's `run` message handed out again as when it outlives the visibility timeout:
        what kombu's restore sweep does to an unacked message that old (the same message, redelivered)."""
        running = set(self._running(IO_QUEUES))
        client = redis.Redis.from_url(self.redis.url)
        try:
            tags = [tag for tag, payload in client.hgetall("unacked").items() if _run_job(payload) in running]
        finally:
            client.close()
        if not tags:
            return f"{len(running)} jobs running, none with its message unacked: nothing restored"
        tag = self.rng.choice(sorted(tags))
        with Connection(self.redis.url, transport_options=celeryconfig.broker_transport_options) as broker:
            broker.default_channel.qos.restore_by_tag(tag.decode())
        return f"{len(running)} jobs running, the run message of one of them restored"

    def _links(self, mode: str, seconds: float) -> None:
        for link in self.links:
            link.mode = mode
        time.sleep(seconds)
        for link in self.links:
            link.mode = "pass"

    def slow_links(self) -> str:
        running = self._running(IO_QUEUES, wait_s=3)
        self._links("slow", 6)
        return f"{len(running)} jobs running"

    def hang_links(self) -> str:
        running = self._running(IO_QUEUES, wait_s=3)
        self._links("hang", 5)
        return f"{len(running)} jobs running"

    def reset_links(self) -> str:
        running = self._running(IO_QUEUES, wait_s=3)
        reset = sum(link.reset() for link in self.links)
        return f"{reset} connections reset, {len(running)} jobs running"

    def close(self) -> None:
        """Let go of the broker connection."""
        self.producer.close()


def _run_job(payload: bytes) -> str | None:
    """The job of an unacked `run` message (kombu keeps [message, exchange, routing key])."""
    message = json.loads(payload)[0]
    if not str(message.get("headers", {}).get("task", "")).endswith(".run"):
        return None
    body = json.loads(base64.b64decode(message["body"]))
    return str(body[0][0])
