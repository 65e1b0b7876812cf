"""The `agent` job kind: research, code and analysis tasks run by the LangGraph agent graphs.

`max_credits` is both the hold and a hard cap: each model step checks its worst case against what
is left and the task stops gracefully (`stopped: "budget"`) with what it has.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from assistant.agents.data_stats import DataError
from assistant.agents.graph import AgentContext, build_graph, run_agent, total_steps
from assistant.agents.toolbox import load_tools
from assistant.agents.tools import conversation_sources, web_sources
from assistant.checkpoints import saver_for
from assistant.providers import ProviderError
from assistant.providers.langchain import BuildError
from assistant.specs import ModelSpec
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.jobs.kinds import JobKind, Quote
from orchestration.jobs.models import job_model
from runtime.settings import Settings

RESULT_FIELDS = {
    "research": ("plan", "queries", "sources", "warnings", "report"),
    "code": ("plan", "code", "code_source", "run", "repairs"),
    "analysis": ("stats", "narrative"),
}
_graphs: dict[tuple[int, str, str, str], Any] = {}
_graphs_lock = threading.Lock()


def price(params: Mapping[str, Any]) -> Quote:
    """The hold is the caller's `max_credits`; the prices of the model are frozen in the params."""
    details = {
        "model": params["model"],
        "agent_kind": params["agent_kind"],
        "max_tokens_per_step": int(params["max_tokens"]),
        **{k: int(v) for k, v in params["pricing"].items()},
    }
    return Quote(
        amount=int(params["max_credits"]), price_version=str(params["price_version"]), details=details
    )


def _graph(kind: str, settings: Settings) -> Any:
    # Checkpointed on the system of record: a task whose worker died resumes after its last node.
    key = (os.getpid(), kind, settings.database_url, settings.AGENT_TOOLS)
    with _graphs_lock:
        if key not in _graphs:
            try:
                tools = load_tools(settings.AGENT_TOOLS)
            except BuildError as exc:
                raise FinalError(f"AGENT_TOOLS: {exc}") from exc
            _graphs[key] = build_graph(kind, saver_for(settings.database_url), tools=tools)
        return _graphs[key]


def _context(ctx: RunContext, spec: ModelSpec) -> AgentContext:
    def conversations(query: str, limit: int) -> list[dict[str, Any]]:
        with ctx.services.uow(autocommit=True) as db:
            return conversation_sources(db, user_id=ctx.user_id, query=query, limit=limit)

    def web(query: str, limit: int) -> list[dict[str, Any]]:
        return web_sources(ctx.services.settings, query=query, limit=limit)

    return AgentContext(
        sink=ctx,
        spec=spec,
        pricing=ctx.params["pricing"],
        max_tokens=int(ctx.params["max_tokens"]),
        settings=ctx.services.settings,
        search_conversations=conversations,
        search_web=web,
    )


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Run the kind's graph; the result holds its fields, the per-node cost lines and the stop reason."""
    kind = str(ctx.params["agent_kind"])
    spec = job_model(ctx)
    try:
        state = run_agent(
            _graph(kind, ctx.services.settings),
            kind=kind,
            prompt=str(ctx.params["prompt"]),
            data=str(ctx.params.get("data") or ""),
            context=_context(ctx, spec),
            task_id=ctx.job_id,
            resume=ctx.attempt > 1,
        )
    except ProviderError as exc:
        raise (RetryableError if exc.retryable else FinalError)(str(exc)) from exc
    except DataError as exc:
        raise FinalError(str(exc)) from exc
    total = total_steps(kind, ctx.services.settings)
    ctx.progress("done", total, total)
    lines = state.get("cost_lines") or []
    cost = sum(int(line["cost"]) for line in lines)
    return {
        "kind": kind,
        "model": spec.id,
        "stopped": state.get("stopped"),
        **{name: state[name] for name in RESULT_FIELDS[kind] if name in state},  # type: ignore[literal-required]
        "cost_lines": [{**line, "cost": credits_text(int(line["cost"]))} for line in lines],
        "cost": credits_text(min(cost, ctx.held)),
    }


AGENT = JobKind(
    name="agent",
    queue="agents",
    price=price,
    run=run,
    model=lambda params: str(params["model"]),
    route=lambda params: str(params.get("queue", "agents")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
)
