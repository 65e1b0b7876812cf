"""Agent tasks over HTTP with real workers (critical + agents) and the echo model; the code sandbox."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest

from assistant import conversations
from assistant.agents.sandbox import network_isolation, run_python
from ledger.amounts import credits_text
from orchestration.services import Services
from tests.integration.assistant.conftest import Client
from tests.support.processes import (
    ROOT,
    api_server,
    worker,
)

pytestmark = pytest.mark.slow
WELCOME = Decimal(1000)


@pytest.fixture(scope="module")
def env(env: dict[str, str]) -> dict[str, str]:
    """Small model steps (64 reply tokens) and a short sandbox limit."""
    return {
        **env,
        "AGENT_STEP_MAX_TOKENS": "64",
        "AGENT_SANDBOX_TIME_LIMIT_S": "5",
        "ECHO_TOKEN_DELAY_MS": "0",
    }


@pytest.fixture(scope="module")
def api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Workers on `critical` and `agents`, and `creditflow api` on a free port."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "crit.log", name="crit", concurrency=1),
        worker("agents", env=env, cwd=ROOT, log=logs / "agents.log", name="agents", concurrency=1),
        worker("local", env=env, cwd=ROOT, log=logs / "local.log", name="local", concurrency=1),
        api_server(env=env, log=logs / "api.log") as base,
    ):
        yield base


def run_task(client: Client, **body: object) -> tuple[dict[str, object], list[dict[str, object]]]:
    """POST a task, follow its events to the end; (the final job, its progress events)."""
    answer = client.call("POST", "/api/v1/agent-tasks", json={"model": "echo", **body})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["cost"]["held"] == body["max_credits"]
    events = client.events(accepted["events_url"])
    assert events[-1].event == "result", events[-1]
    job = client.wait_job(accepted["job_id"])
    assert (job["kind"], job["queue"], job["status"]) == ("agent", "agents", "succeeded"), job
    return job, [e.data for e in events if e.event == "progress"]


def assert_costs_add_up(client: Client, job: dict[str, object]) -> None:
    """Charged = the result's cost = the sum of its cost lines; the balance shows the charge."""
    result = job["result"]
    assert isinstance(result, dict)
    lines = sum(Decimal(line["cost"]) for line in result["cost_lines"])
    cost = job["cost"]
    assert isinstance(cost, dict)
    assert Decimal(cost["charged"]) == Decimal(result["cost"]) == lines
    assert Decimal(cost["charged"]) <= Decimal(cost["held"])
    balance = client.call("GET", "/api/v1/credits/balance").json()
    assert Decimal(balance["available"]) == WELCOME - lines


def assert_progress(progress: list[dict[str, object]], stages: list[str]) -> None:
    nodes = [p["stage"] for p in progress if not str(p["stage"]).startswith("tool:")]  # not tool calls
    assert nodes[: len(stages)] == stages
    assert all(isinstance(p["step"], int) and isinstance(p["total"], int) for p in progress)
    assert progress[-1]["step"] == progress[-1]["total"]


def test_research_cites_the_users_own_conversation(client: Client, services: Services) -> None:
    conversation = client.conversation(title="garden notes")
    with services.uow() as session:
        conversations.add_message(
            session, conversation_id=conversation, position=0, role="user", content="tomatoes need full sun"
        )
    job, progress = run_task(client, kind="research", prompt="What do tomatoes need?", max_credits="5")
    result = job["result"]
    assert isinstance(result, dict)
    assert result["stopped"] is None
    calls = ["tool:search_conversations", "tool:search_web"] * len(result["queries"])
    assert sorted(line["node"] for line in result["cost_lines"][1:-2]) == sorted(calls)  # one line a call
    assert result["cost_lines"][0]["node"] == "plan"
    assert [line["node"] for line in result["cost_lines"]][-2:] == ["gather", "synthesise"]
    assert any(source["excerpt"] == "tomatoes need full sun" for source in result["sources"])
    assert "Sources:" in result["report"]
    assert f"conversation:{conversation}" in result["report"]
    assert_progress(progress, ["plan", "gather", "synthesise"])
    tools = [p["stage"] for p in progress if str(p["stage"]).startswith("tool:")]
    assert set(tools) == {"tool:search_conversations", "tool:search_web"}  # LangGraph's ToolNode ran them
    assert len(tools) == 2 * len(result["queries"])
    assert_costs_add_up(client, job)


def test_code_runs_the_fallback_program_in_the_sandbox(client: Client) -> None:
    job, progress = run_task(client, kind="code", prompt="count the words of this sentence", max_credits="5")
    result = job["result"]
    assert isinstance(result, dict)
    assert result["code_source"] == "fallback"  # echo writes no code
    assert result["run"]["exit_code"] == 0
    assert "checks passed" in result["run"]["stdout"]
    assert "TASK = 'count the words of this sentence'" in result["code"]
    assert [line["node"] for line in result["cost_lines"]] == ["plan", "write", "run"]
    assert_progress(progress, ["plan", "write", "run"])
    assert_costs_add_up(client, job)


def test_analysis_computes_real_statistics(client: Client) -> None:
    data = "city,temp,rain\nOslo,4,10\nRome,18,2\nLima,20,0\nCairo,30,\n"
    job, progress = run_task(client, kind="analysis", prompt="Compare the cities", data=data, max_credits="5")
    result = job["result"]
    assert isinstance(result, dict)
    stats = result["stats"]
    assert stats["rows"] == 4
    assert stats["numeric"]["temp"] == {"count": 4, "mean": 18.0, "min": 4.0, "max": 30.0, "median": 19.0}
    assert stats["numeric"]["rain"]["count"] == 3
    assert "city" not in stats["numeric"]
    assert "temp: count 4, mean 18" in result["narrative"]  # echo repeats the numbers it was given
    assert_progress(progress, ["compute", "narrate"])
    assert_costs_add_up(client, job)


def test_tiny_max_credits_stops_gracefully_under_the_cap(client: Client) -> None:
    job, _progress = run_task(client, kind="code", prompt="print hello", max_credits="0.1")
    result = job["result"]
    assert isinstance(result, dict)
    assert result["stopped"] == "budget"
    skipped = [line for line in result["cost_lines"] if line.get("skipped") == "budget"]
    assert len(skipped) == 1
    assert "run" not in [line["node"] for line in result["cost_lines"]]
    charged = Decimal(job["cost"]["charged"])  # type: ignore[index]
    assert 0 < charged <= Decimal("0.1")  # the plan step ran, the next one would have passed the cap
    assert_costs_add_up(client, job)


def test_bad_requests_are_422(client: Client) -> None:
    answers = [
        client.call("POST", "/api/v1/agent-tasks", json=body)
        for body in (
            {"kind": "analysis", "prompt": "x", "max_credits": "1", "data": "{not json"},
            {"kind": "poetry", "prompt": "x", "max_credits": "1"},
            {"kind": "code", "prompt": "x", "max_credits": "0"},
            {"kind": "code", "prompt": "x", "max_credits": "1", "model": "no-such-model"},
        )
    ]
    assert [a.status_code for a in answers] == [422, 422, 422, 422], [a.text for a in answers]
    assert client.call("GET", "/api/v1/credits/balance").json()["available"] == credits_text(1000_000_000)


def test_sandbox_refuses_network_and_kills_a_runaway_loop() -> None:
    assert run_python("print(6 * 7)").stdout == "42\n"
    network = run_python("import socket\nsocket.create_connection(('127.0.0.1', 80))")
    assert network.exit_code == 1
    assert "PermissionError" in network.stderr
    raw = run_python("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)")
    assert raw.exit_code == 1
    assert "network access" in raw.stderr
    spawn = run_python("import subprocess\nsubprocess.run(['true'])")
    assert spawn.exit_code == 1
    assert "PermissionError" in spawn.stderr
    runaway = run_python("while True:\n    pass", time_limit_s=1)
    assert runaway.timed_out
    assert runaway.exit_code != 0
    memory = run_python("x = bytearray(2 * 1024 ** 3)", memory_mb=128)
    assert memory.exit_code != 0
    assert "MemoryError" in memory.stderr
    environment = run_python("import os\nprint(sorted(os.environ), os.getcwd())")
    assert "REDIS_URL" not in environment.stdout
    assert "creditflow-sandbox-" in environment.stdout


def test_sandbox_network_namespace_stops_a_program_that_gets_around_the_wrapper() -> None:
    if not network_isolation():
        pytest.skip("this kernel refuses network namespaces (unshare --net); the wrapper alone applies")
    with socket.socket() as server:  # something the program could reach without the namespace
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # socket.SocketType is the C class itself: the wrapper's patching does not reach it.
        escape = run_python(
            f"import socket\ns = socket.SocketType()\ns.connect(('127.0.0.1', {port}))\nprint('reached')"
        )
    assert "reached" not in escape.stdout
    assert escape.exit_code == 1
    assert "OSError" in escape.stderr
