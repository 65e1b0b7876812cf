"""The nodes of the agent graphs: research, code and analysis steps.

Code steps: when the model's reply holds no runnable code (the `echo` model never writes any), a
tiny deterministic program derived from the prompt is used instead, so the sandbox still runs a
real program and the result says `code_source: "fallback"`.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from langgraph.runtime import Runtime

from assistant.agents.data_stats import describe, parse_records, summary_text
from assistant.agents.sandbox import run_python
from assistant.agents.state import (
    FENCE,
    MAX_QUERIES,
    AgentContext,
    AgentState,
    ask_model,
    cost_line,
    enter_node,
    step_result,
)
from assistant.agents.toolbox import tool_results

# research: plan -> gather -> synthesise


def research_plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for search queries; the question itself is always the first one."""
    step = enter_node(state, runtime, "plan")
    prompt = state["prompt"]
    reply, line, stopped = ask_model(
        "plan",
        f"Plan research for the question below. List up to {MAX_QUERIES} short search queries, "
        f"one per line, nothing else.\nQuestion: {prompt}",
        runtime,
    )
    lines = [re.sub(r"^[\s\-*\d.)]+", "", raw).strip() for raw in (reply or "").splitlines()]
    queries = [prompt, *[q for q in lines if 3 <= len(q) <= 200 and q != prompt]][:MAX_QUERIES]
    return {**step_result(step, line, stopped), "plan": reply or "", "queries": queries}


def research_gather(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Collect what the tools found (the ToolNode ran every query through every tool before this)."""
    step = enter_node(state, runtime, "gather")
    found, warnings, tool_lines = tool_results(state.get("messages") or [])
    sources = [{"id": index, **source} for index, source in enumerate(found, 1)]
    return {
        "step": step,
        "cost_lines": [*tool_lines, cost_line("gather", searches=len(tool_lines), sources=len(sources))],
        "sources": sources,
        "warnings": warnings,
    }


def research_synthesise(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Write the report from the sources, citing them as [n]; the source list is appended as is."""
    step = enter_node(state, runtime, "synthesise")
    sources = state.get("sources") or []
    listing = "\n".join(f"[{s['id']}] {s['title']}: {s['excerpt']}" for s in sources) or "(no sources found)"
    reply, line, stopped = ask_model(
        "synthesise",
        "Write a short report answering the question from the sources, citing them as [n].\n"
        f"Question: {state['prompt']}\nSources:\n{listing}",
        runtime,
    )
    cited = "\n".join(f"[{s['id']}] {s['title']} ({s['ref']})" for s in sources)
    report = (reply or "").strip() + (f"\n\nSources:\n{cited}" if cited else "\n\nSources: none found.")
    return {**step_result(step, line, stopped), "report": report}


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
    step = enter_node(state, runtime, "plan")
    reply, line, stopped = ask_model(
        "plan",
        "Plan a short self-contained Python program for the task below: its steps and the assert "
        f"checks that test it.\nTask: {state['prompt']}",
        runtime,
    )
    return {**step_result(step, line, stopped), "plan": reply or ""}


def _code_from(reply: str | None, prompt: str) -> tuple[str, str]:
    code = extract_code(reply or "")
    return (code, "model") if code else (fallback_program(prompt), "fallback")


def code_write(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for the program (with asserts as its tests)."""
    step = enter_node(state, runtime, "write")
    reply, line, stopped = ask_model(
        "write",
        "Write one self-contained Python program (standard library only, no network) for the task, "
        "checking itself with assert statements. Reply with only the code in a ```python block.\n"
        f"Task: {state['prompt']}\nPlan: {state.get('plan', '')}",
        runtime,
    )
    if reply is None:
        return step_result(step, line, stopped)
    code, source = _code_from(reply, state["prompt"])
    return {**step_result(step, line, stopped), "code": code, "code_source": source}


def code_run(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Run the program in the sandbox (time, memory limits; no network)."""
    step = enter_node(state, runtime, "run")
    settings = runtime.context.settings
    result = run_python(
        state["code"],
        time_limit_s=settings.AGENT_SANDBOX_TIME_LIMIT_S,
        memory_mb=settings.AGENT_SANDBOX_MEMORY_MB,
    )
    stopped = "canceled" if runtime.context.sink.should_stop() else None
    line = cost_line("run", exit_code=result.exit_code)
    return {**step_result(step, line, stopped), "run": result.as_json()}


def code_repair(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Show the model the failure and take its fixed program (the fallback when it gives none)."""
    step = enter_node(state, runtime, "repair")
    run = state.get("run") or {}
    reply, line, stopped = ask_model(
        "repair",
        "This Python program failed. Reply with only the fixed program in a ```python block.\n"
        f"Task: {state['prompt']}\nProgram:\n{state['code']}\nExit code: {run.get('exit_code')}\n"
        f"Error output:\n{str(run.get('stderr', ''))[-2000:]}",
        runtime,
    )
    repairs = int(state.get("repairs", 0)) + 1
    if reply is None:
        return {**step_result(step, line, stopped), "repairs": repairs}
    code, source = _code_from(reply, state["prompt"])
    return {**step_result(step, line, stopped), "code": code, "code_source": source, "repairs": repairs}


def after_run(state: AgentState, runtime: Runtime[AgentContext]) -> str:
    run = state.get("run") or {}
    if state.get("stopped") or run.get("exit_code") == 0:
        return "stop"
    return (
        "repair" if int(state.get("repairs", 0)) < runtime.context.settings.AGENT_REPAIR_ATTEMPTS else "stop"
    )


# analysis: compute -> narrate


def analysis_compute(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Statistics of the data with real code (csv/json/statistics): no model involved."""
    step = enter_node(state, runtime, "compute")
    stats = describe(parse_records(state["data"]))
    return {"step": step, "cost_lines": [cost_line("compute", rows=stats["rows"])], "stats": stats}


def analysis_narrate(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Ask the model for a narrative built on the computed numbers."""
    step = enter_node(state, runtime, "narrate")
    reply, line, stopped = ask_model(
        "narrate",
        "Write a short narrative answering the request from these statistics; quote the numbers.\n"
        f"Request: {state['prompt']}\nStatistics:\n{summary_text(state['stats'])}",
        runtime,
    )
    return {**step_result(step, line, stopped), "narrative": (reply or "").strip()}


