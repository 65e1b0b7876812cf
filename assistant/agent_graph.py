"""Agent tasks as LangGraph graphs: the graph, not the model, decides the steps (small models work).

Every model step checks the task's remaining budget against its worst case (prompt token bound +
max_tokens at the frozen prices) before it calls the model, and stops the task gracefully
(`stopped: "budget"`) when it doesn't fit. Each node reports progress and books one cost line.
Code steps: when the model's reply holds no runnable code (the `echo` model never writes any), a
tiny deterministic program derived from the prompt is used instead, so the sandbox still runs a
real program and the result says `code_source: "fallback"`.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from assistant.catalog import ModelSpec
from assistant.data_stats import describe, parse_records, summary_text
from assistant.pricing import chat_cost, chat_hold
from assistant.providers import Usage, provider_for
from assistant.sandbox import run_python
from assistant.transcript import Turn, pieces, token_bound, transcript
from runtime.settings import Settings

FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
MAX_QUERIES = 3
MAX_SOURCES = 8
KINDS = ("research", "code", "analysis")


class AgentSink(Protocol):
    """Where an agent reports: progress, cost, budget and cancellation."""

    def progress(self, stage: str, step: int, total: int) -> None:
        """Publish a progress event."""

    def charge(self, amount: int) -> int:
        """Book a cost (micro-credits)."""

    def remaining(self) -> int:
        """Micro-credits left under the task's cap."""

    def should_stop(self) -> bool:
        """True once the user canceled."""


class AgentState(TypedDict, total=False):
    """What flows between the nodes; `cost_lines` accumulates one line per node."""

    kind: str
    prompt: str
    data: str
    step: int
    stopped: str | None
    cost_lines: Annotated[list[dict[str, Any]], operator.add]
    plan: str
    queries: list[str]
    sources: list[dict[str, Any]]
    warnings: list[str]
    report: str
    code: str
    code_source: str
    run: dict[str, Any]
    repairs: int
    stats: dict[str, Any]
    narrative: str


@dataclass(frozen=True)
class AgentContext:
    """Run-scoped inputs (not state): where to report, the model and its frozen prices, the tools."""

    sink: AgentSink
    spec: ModelSpec
    pricing: Mapping[str, int]
    max_tokens: int
    settings: Settings
    search_conversations: Callable[[str, int], list[dict[str, Any]]]
    search_web: Callable[[str, int], list[dict[str, Any]]]


def total_steps(kind: str, settings: Settings) -> int:
    """How many node runs a task of `kind` may take (progress `total`)."""
    if kind == "code":
        return 3 + 2 * settings.AGENT_REPAIR_ATTEMPTS
    return {"research": 3, "analysis": 2}[kind]


def _line(node: str, *, cost: int = 0, usage: Usage | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "node": node,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cost": cost,
        **extra,
    }


def _enter(state: AgentState, runtime: Runtime[AgentContext], stage: str) -> int:
    step = int(state.get("step", 0)) + 1
    runtime.context.sink.progress(stage, step, total_steps(str(state["kind"]), runtime.context.settings))
    return step


def _fit(text: str, context: AgentContext) -> list[Turn]:
    """The prompt as one user turn, clipped so its token bound leaves room for max_tokens."""
    room = context.spec.context_length - context.max_tokens - token_bound([Turn(role="user", content="")])
    clipped = text.encode()[: max(0, room)].decode(errors="ignore")
    return [Turn(role="user", content=clipped)]


def _ask(
    node: str, text: str, runtime: Runtime[AgentContext]
) -> tuple[str | None, dict[str, Any], str | None]:
    """One model call under the cap: (reply or None when stopped, its cost line, stop reason)."""
    context = runtime.context
    turns = _fit(text, context)
    worst = chat_hold(context.pricing, prompt_tokens=token_bound(turns), max_tokens=context.max_tokens)
    if context.sink.should_stop():
        return None, _line(node, skipped="canceled"), "canceled"
    if worst > context.sink.remaining():
        return None, _line(node, skipped="budget", worst_case=worst), "budget"
    provider = provider_for(context.spec.provider)
    parts: list[str] = []
    usage: Usage | None = None
    stopped = None
    for chunk in provider.stream(
        context.spec, turns, max_tokens=context.max_tokens, settings=context.settings
    ):
        parts.append(chunk.text)
        usage = chunk.usage or usage
        if context.sink.should_stop():
            stopped = "canceled"
            break
    reply = "".join(parts)
    if usage is None or (stopped and usage.output_tokens < len(pieces(reply))):
        usage = Usage(len(pieces(transcript(turns))), len(pieces(reply)))  # estimate what was delivered
    cost = chat_cost(context.pricing, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    context.sink.charge(cost)
    return reply, _line(node, cost=cost, usage=usage), stopped


def _stop(step: int, line: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {"step": step, "cost_lines": [line], "stopped": reason}


def _after(state: AgentState) -> str:
    return "stop" if state.get("stopped") else "go"


# research: plan -> gather -> synthesise


def research_plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for search queries; the question itself is always the first one."""
    step = _enter(state, runtime, "plan")
    prompt = state["prompt"]
    reply, line, stopped = _ask(
        "plan",
        f"Plan research for the question below. List up to {MAX_QUERIES} short search queries, "
        f"one per line, nothing else.\nQuestion: {prompt}",
        runtime,
    )
    lines = [re.sub(r"^[\s\-*\d.)]+", "", raw).strip() for raw in (reply or "").splitlines()]
    queries = [prompt, *[q for q in lines if 3 <= len(q) <= 200 and q != prompt]][:MAX_QUERIES]
    return {**_stop(step, line, stopped), "plan": reply or "", "queries": queries}


def research_gather(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Search the user's conversations (and the web when a provider is set) for every query."""
    step = _enter(state, runtime, "gather")
    context = runtime.context
    found: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    searches = 0
    for query in state.get("queries") or [state["prompt"]]:
        for search in (context.search_conversations, context.search_web):
            try:
                results = search(query, MAX_SOURCES)
            except RuntimeError as exc:  # a failed web search: go on with what we have
                warnings.append(str(exc))
                continue
            searches += 1
            for source in results:
                found.setdefault(source["ref"], source)
    sources = [{"id": index, **source} for index, source in enumerate(list(found.values())[:MAX_SOURCES], 1)]
    return {
        "step": step,
        "cost_lines": [_line("gather", searches=searches, sources=len(sources))],
        "sources": sources,
        "warnings": warnings,
    }


def research_synthesise(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Write the report from the sources, citing them as [n]; the source list is appended as is."""
    step = _enter(state, runtime, "synthesise")
    sources = state.get("sources") or []
    listing = "\n".join(f"[{s['id']}] {s['title']}: {s['excerpt']}" for s in sources) or "(no sources found)"
    reply, line, stopped = _ask(
        "synthesise",
        "Write a short report answering the question from the sources, citing them as [n].\n"
        f"Question: {state['prompt']}\nSources:\n{listing}",
        runtime,
    )
    cited = "\n".join(f"[{s['id']}] {s['title']} ({s['ref']})" for s in sources)
    report = (reply or "").strip() + (f"\n\nSources:\n{cited}" if cited else "\n\nSources: none found.")
    return {**_stop(step, line, stopped), "report": report}


# code: plan -> write -> run -> (repair -> run)* bounded


def extract_code(reply: str) -> str | None:
    """The program in the reply: a fenced block, or the whole reply when it parses and does something."""
    fenced = FENCE.search(reply)
    candidate = fenced.group(1) if fenced else reply
    try:
        tree = ast.parse(candidate)
    except SyntaxError:
        return None
    acts = (ast.Call, ast.Assign, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assert)
    return candidate if any(isinstance(node, acts) for node in ast.walk(tree)) else None


def fallback_program(prompt: str) -> str:
    """A tiny deterministic program derived from the prompt (used when the model wrote no code)."""
    words = prompt.split()
    return (
        "# Fallback: the model's reply held no runnable code, so this program was derived from the prompt.\n"
        f"TASK = {prompt!r}\n"
        "words = TASK.split()\n"
        'print("task:", TASK)\n'
        'print("words:", len(words), "characters:", len(TASK))\n'
        f'assert len(words) == {len(words)}, "word count"\n'
        'print("checks passed")\n'
    )


def code_plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for a short plan of the program and its checks."""
    step = _enter(state, runtime, "plan")
    reply, line, stopped = _ask(
        "plan",
        "Plan a short self-contained Python program for the task below: its steps and the assert "
        f"checks that test it.\nTask: {state['prompt']}",
        runtime,
    )
    return {**_stop(step, line, stopped), "plan": reply or ""}


def _code_from(reply: str | None, prompt: str) -> tuple[str, str]:
    code = extract_code(reply or "")
    return (code, "model") if code else (fallback_program(prompt), "fallback")


def code_write(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for the program (with asserts as its tests)."""
    step = _enter(state, runtime, "write")
    reply, line, stopped = _ask(
        "write",
        "Write one self-contained Python program (standard library only, no network) for the task, "
        "checking itself with assert statements. Reply with only the code in a ```python block.\n"
        f"Task: {state['prompt']}\nPlan: {state.get('plan', '')}",
        runtime,
    )
    if reply is None:
        return _stop(step, line, stopped)
    code, source = _code_from(reply, state["prompt"])
    return {**_stop(step, line, stopped), "code": code, "code_source": source}


def code_run(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Run the program in the sandbox (time, memory limits; no network)."""
    step = _enter(state, runtime, "run")
    settings = runtime.context.settings
    result = run_python(
        state["code"],
        time_limit_s=settings.AGENT_SANDBOX_TIME_LIMIT_S,
        memory_mb=settings.AGENT_SANDBOX_MEMORY_MB,
    )
    stopped = "canceled" if runtime.context.sink.should_stop() else None
    return {**_stop(step, _line("run", exit_code=result.exit_code), stopped), "run": result.as_json()}


def code_repair(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Show the model the failure and take its fixed program (the fallback when it gives none)."""
    step = _enter(state, runtime, "repair")
    run = state.get("run") or {}
    reply, line, stopped = _ask(
        "repair",
        "This Python program failed. Reply with only the fixed program in a ```python block.\n"
        f"Task: {state['prompt']}\nProgram:\n{state['code']}\nExit code: {run.get('exit_code')}\n"
        f"Error output:\n{str(run.get('stderr', ''))[-2000:]}",
        runtime,
    )
    repairs = int(state.get("repairs", 0)) + 1
    if reply is None:
        return {**_stop(step, line, stopped), "repairs": repairs}
    code, source = _code_from(reply, state["prompt"])
    return {**_stop(step, line, stopped), "code": code, "code_source": source, "repairs": repairs}


def _after_run(state: AgentState, runtime: Runtime[AgentContext]) -> str:
    run = state.get("run") or {}
    if state.get("stopped") or run.get("exit_code") == 0:
        return "stop"
    return (
        "repair" if int(state.get("repairs", 0)) < runtime.context.settings.AGENT_REPAIR_ATTEMPTS else "stop"
    )


# analysis: compute -> narrate


def analysis_compute(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Statistics of the data with real code (csv/json/statistics): no model involved."""
    step = _enter(state, runtime, "compute")
    stats = describe(parse_records(state["data"]))
    return {"step": step, "cost_lines": [_line("compute", rows=stats["rows"])], "stats": stats}


def analysis_narrate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for a narrative built on the computed numbers."""
    step = _enter(state, runtime, "narrate")
    reply, line, stopped = _ask(
        "narrate",
        "Write a short narrative answering the request from these statistics; quote the numbers.\n"
        f"Request: {state['prompt']}\nStatistics:\n{summary_text(state['stats'])}",
        runtime,
    )
    return {**_stop(step, line, stopped), "narrative": (reply or "").strip()}


def build_graph(kind: str) -> Any:
    """The compiled graph of an agent kind (no checkpointer: a retried task starts over)."""
    graph = StateGraph(AgentState, context_schema=AgentContext)
    if kind == "research":
        chain = [("plan", research_plan), ("gather", research_gather), ("synthesise", research_synthesise)]
    elif kind == "analysis":
        chain = [("compute", analysis_compute), ("narrate", analysis_narrate)]
    elif kind == "code":
        chain = [("plan", code_plan), ("write", code_write), ("run", code_run)]
        graph.add_node("repair", code_repair)
        graph.add_conditional_edges("repair", _after, {"go": "run", "stop": END})
    else:
        raise ValueError(f"unknown agent kind {kind!r}")
    for name, node in chain:
        graph.add_node(name, node)
    graph.add_edge(START, chain[0][0])
    for (name, _node), (following, _next) in itertools.pairwise(chain):
        graph.add_conditional_edges(name, _after, {"go": following, "stop": END})
    last = chain[-1][0]
    if kind == "code":
        graph.add_conditional_edges(last, _after_run, {"repair": "repair", "stop": END})
    else:
        graph.add_edge(last, END)
    return graph.compile()


def run_agent(graph: Any, *, kind: str, prompt: str, data: str, context: AgentContext) -> AgentState:
    """Run a task to its end (or its graceful stop); returns the final state."""
    initial: AgentState = {
        "kind": kind,
        "prompt": prompt,
        "data": data,
        "step": 0,
        "stopped": None,
        "cost_lines": [],
    }
    return graph.invoke(initial, context=context)  # type: ignore[no-any-return]
