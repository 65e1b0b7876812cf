"""Two worker "hosts" in network namespaces of the test's own (veth pairs, 10.231.x.0/30), each a
threads pool reaching Redis and PostgreSQL over its link (a TCP proxy on the host end of the veth);
the API, the critical pool and beat on the host. One host's link is cut mid-job and later restored:
its jobs end resolved, none charged twice, and the other host serves the jobs sent meanwhile."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from orchestration.tables import jobs
from runtime.db import make_engine
from runtime.migrate import upgrade
from tests.chaos.invariants import ENDED, problems
from tests.chaos.proxy import Proxy
from tests.chaos.stack import ChaosRedis, Role, Stack, stack_env
from tests.integration.api.conftest import bearer, make_token
from tests.support.postgres_server import postgres_bindir, private_postgres

HOSTS = {"h1": "10.231.1", "h2": "10.231.2"}
CUT_S = 15.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)


def _namespaces_refused() -> str | None:
    """Why network namespaces can't be made here (None: they can)."""
    probe = f"cf-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"network namespaces are not allowed here (`ip netns add` failed: {exc})"
    _ip("netns", "del", probe)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(280),
    pytest.mark.skipif(postgres_bindir() is None, reason="needs PostgreSQL's server binaries"),
    pytest.mark.skipif(bool(refused := _namespaces_refused()), reason=refused or ""),
]


@contextmanager
def hosts() -> Iterator[dict[str, tuple[str, str]]]:
    """Each host's namespace and the host end of its veth link (what a cut takes down)."""
    made: dict[str, tuple[str, str]] = {}
    tag = os.getpid() % 10000
    try:
        for name, net in HOSTS.items():
            ns, outer, inner = f"cf-{name}-{tag}", f"cf{name}o{tag}", f"cf{name}i{tag}"
            _ip("netns", "add", ns)
            made[name] = (ns, outer)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{net}.1/30", "dev", outer)
            _ip("link", "set", outer, "up")
            for args in (
                ("addr", "add", f"{net}.2/30", "dev", inner),
                ("link", "set", inner, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", ns, "ip", *args)
        yield made
    finally:
        for ns, outer in made.values():
            with suppress(subprocess.SubprocessError):
                _ip("link", "del", outer)
            with suppress(subprocess.SubprocessError):
                _ip("netns", "del", ns)


def _send(base: str, headers: dict[str, str], count: int, steps: int) -> list[str]:
    body = {"steps": steps, "sleep_ms": 1000, "cost_per_step": "0.001"}
    sent = []
    for n in range(count):
        body["queue"] = ("interactive", "agents", "images")[n % 3]
        answer = requests.post(f"{base}/api/v1/diagnostics/jobs", json=body, headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text[:300]
        sent.append(str(answer.json()["job_id"]))
    return sent


def test_a_cut_host_ends_its_jobs_resolved_and_the_other_keeps_serving(tmp_path: Path) -> None:
    with hosts() as made, private_postgres() as postgres:
        engine = make_engine(postgres.url)
        upgrade(engine)
        redis = ChaosRedis(tmp_path / "redis")
        redis.start(persist=False)
        env = stack_env(postgres.url, redis.url, tmp_path / "var")
        stack = Stack(env, tmp_path)
        del stack.roles["io"]
        links = []
        for name, (ns, _outer) in made.items():
            net = HOSTS[name]
            to_redis, to_pg = Proxy(redis.port, host=f"{net}.1"), Proxy(postgres.port, host=f"{net}.1")
            links += [to_redis, to_pg]
            host_env = {
                "REDIS_URL": f"redis://{net}.1:{to_redis.port}/0",
                "DATABASE_URL": f"postgresql+psycopg://postgres@{net}.1:{to_pg.port}/postgres",
                "VAR_DIR": str(tmp_path / f"var-{name}"),
            }
            args = (
                "worker",
                "--queues",
                "interactive,agents,images",
                "--pool",
                "threads",
                "--concurrency",
                "20",
                "--hostname",
                f"{name}@%h",
            )
            stack.roles[name] = Role(name, args, " ready.", host_env, ("ip", "netns", "exec", ns))
        try:
            stack.start_all()
            headers = bearer(make_token("hosts-user", exp=int(time.time()) + 3600))
            before = _send(stack.base, headers, 12, steps=10)
            deadline = time.monotonic() + 30
            while _count(engine, before, ("running",)) < 8:
                assert time.monotonic() < deadline, "the jobs did not start on both hosts"
                time.sleep(0.3)
            cut_at = time.monotonic()
            _ip("link", "set", made["h1"][1], "down")  # h1 is gone: no FIN, no RST, silence
            during = _send(stack.base, headers, 6, steps=2)
            time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
            served = _count(engine, during, ("succeeded",))  # by h2, while h1 was away
            _ip("link", "set", made["h1"][1], "up")
            ended_after = _wait_ended(engine, before + during, 90)
            found, outcomes = problems(engine, {})
        finally:
            stack.stop_all()
            for link in links:
                link.close()
            redis.kill()
            engine.dispose()
    print(
        f"\nhosts: {served}/{len(during)} jobs sent during the {CUT_S:g} s cut succeeded on h2 meanwhile; "
        f"every job ended {ended_after:.1f} s after h1's link came back; {dict(outcomes)}"
    )
    # kombu's Redis transport pops a message before it reaches its consumer: h1's pending BRPOP takes
    # the next message into the dead link, and h1 runs it once the link is back (TCP retransmits).
    assert served >= len(during) - 1, "the other host did not serve the jobs sent during the cut"
    assert not found, "\n".join(found[:40])


def _count(engine: object, ids: list[str], statuses: tuple[str, ...]) -> int:
    with engine.connect() as db:  # type: ignore[attr-defined]
        query = select(func.count()).where(jobs.c.id.in_(ids), jobs.c.status.in_(statuses))
        return int(db.execute(query).scalar_one())


def _wait_ended(engine: object, ids: list[str], bound_s: float) -> float:
    started = time.monotonic()
    while _count(engine, ids, ENDED) < len(ids):
        assert time.monotonic() - started < bound_s, f"jobs not ended within {bound_s:g} s"
        time.sleep(0.3)
    return time.monotonic() - started
