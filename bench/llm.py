"""Local LLM benchmark: tokens/s of Gemma 3 270M through the whole chat job vs llama-cpp-python directly.

Run: .venv/bin/python bench/llm.py [--runs 5 --max-tokens 64]   (SQLite + embedded Redis unless
DATABASE_URL / REDIS_URL are set). It starts a critical worker, the local model's worker (queue `local`)
with one slot (as many llama.cpp threads as LOCAL_LLM_THREADS) and `creditflow api`.

(a) floor: llama-cpp-python `generate` in this process, same model file, prompt, sampling, threads;
(b) ours: POST /api/v1/chat/conversations/{id}/messages -> final SSE event, output tokens / wall time.
Runs alternate (a), (b) so machine load hits both alike. Goal: (b) >= 90% of (a).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.catalog import DEFAULT_CATALOG, read_catalog
from assistant.providers.local import model_path, sampling
from assistant.transcript import STOP, Turn, transcript
from bench.results import Results, add_json_argument
from runtime.local import embedded_redis_url, stop_embedded_redis
from tests.support.processes import ROOT, child_env, creditflow, free_port, stop, wait_http, worker
from tests.support.sse import frames

SECRET = "bench-llm-secret-bench-llm-secret-0123456789"  # noqa: S105 (a throw-away stack)
# A base model answers most questions in a dozen tokens; this one runs to max_tokens under greedy
# sampling, so fixed per-job costs do not swamp the tokens/s being compared.
QUESTION = "Count from one to thirty in words, separated by commas."


@contextmanager
def stack(tmp: Path, threads: int, catalog: Path) -> Iterator[str]:
    """Workers and the API; yields the API URL."""
    with ExitStack() as stack_:
        redis_url = os.environ.get("REDIS_URL") or embedded_redis_url(tmp / "redis")
        if not os.environ.get("REDIS_URL"):
            stack_.callback(stop_embedded_redis, tmp / "redis")
        env = child_env(
            DATABASE_URL=os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}",
            REDIS_URL=redis_url,
            AUTH_JWT_SECRET=SECRET,
            VAR_DIR=str(tmp / "var"),
            CREDITFLOW_ENV="test",
            RATE_LIMITS_ENABLED="false",
            LOCAL_LLM_THREADS=str(threads),
            ASSISTANT_CATALOG=str(catalog),
        )
        from runtime.db import make_engine
        from runtime.migrate import upgrade

        engine = make_engine(env["DATABASE_URL"])
        upgrade(engine)
        engine.dispose()
        stack_.enter_context(
            worker("critical", env=env, cwd=ROOT, log=tmp / "crit.log", name="crit", concurrency=1)
        )
        stack_.enter_context(
            worker("local", env=env, cwd=ROOT, log=tmp / "llm.log", name="llm", concurrency=1)
        )
        port = free_port()
        api = creditflow("api", "--port", str(port), env=env, cwd=ROOT, log=tmp / "api.log")
        stack_.callback(stop, api)
        wait_http(f"http://127.0.0.1:{port}/readyz", process=api, log=tmp / "api.log")
        yield f"http://127.0.0.1:{port}"


def ours(api: str, bearer: str, conversation: str, max_tokens: int, question: str) -> tuple[int, float]:
    """One turn through the pipeline: (output tokens, seconds from POST to the final event)."""
    headers = {"Authorization": f"Bearer {bearer}"}
    started = time.perf_counter()
    answer = requests.post(
        f"{api}/api/v1/chat/conversations/{conversation}/messages",
        json={"content": question, "max_tokens": max_tokens},
        headers=headers,
        timeout=30,
    )
    answer.raise_for_status()
    url, last = api + answer.json()["events_url"], None
    for _ in range(5):  # a dropped stream resumes after the last event it delivered (Last-Event-ID)
        resume = {"Last-Event-ID": last} if last else {}
        try:
            with requests.get(url, headers={**headers, **resume}, stream=True, timeout=300) as stream:
                for frame in frames(stream):
                    last = frame.id or last
                    if frame.event in ("result", "failed", "canceled"):
                        if frame.event != "result":
                            raise RuntimeError(f"turn ended {frame.event}: {frame.data}")
                        seconds = time.perf_counter() - started
                        return int(frame.data["result"]["usage"]["output_tokens"]), seconds
        except requests.exceptions.ChunkedEncodingError:
            print("(the event stream dropped; resuming)", file=sys.stderr)
    raise RuntimeError("stream ended without a final event")


def direct(llm: Any, prompt: list[int], max_tokens: int, options: dict[str, Any]) -> tuple[int, float]:
    """llama-cpp-python alone: `create_completion` with the same prompt, sampling and stop sequences."""
    started = time.perf_counter()
    answer = llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        stop=STOP,
        temperature=options["temp"],
        top_p=options["top_p"],
        top_k=options["top_k"],
        repeat_penalty=options["repeat_penalty"],
    )
    return int(answer["usage"]["completion_tokens"]), time.perf_counter() - started


def main() -> int:
    """Alternate direct and pipeline runs; print tokens/s of each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--question", default=QUESTION, help="the user's message (sets the reply's length)")
    add_json_argument(parser)
    args = parser.parse_args()
    from llama_cpp import Llama

    tmp = Path(tempfile.mkdtemp(prefix="cf-bench-llm-"))
    # Greedy decoding on both sides: the same tokens come out, so only the time differs.
    document = yaml.safe_load(DEFAULT_CATALOG.read_text())
    for entry in document["models"]:
        if entry["id"] == "gemma-3-270m":
            entry["options"] = {**entry.get("options", {}), "temperature": 0.0}
    catalog = tmp / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(document))
    spec = {model.id: model for model in read_catalog(catalog)}["gemma-3-270m"]
    llm = Llama(model_path=model_path(), n_ctx=spec.context_length, n_threads=args.threads, verbose=False)
    prompt = list(llm.tokenize(transcript([Turn(role="user", content=args.question)]).encode(), add_bos=True))
    options = sampling(spec)
    with stack(tmp, args.threads, catalog) as api:
        now = int(time.time())
        claims = {"iss": "creditflow", "sub": f"bench-{uuid.uuid4().hex}", "iat": now, "exp": now + 3600}
        bearer = jwt.encode(claims, SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {bearer}"}
        created = requests.post(
            f"{api}/api/v1/chat/conversations", json={"model": "gemma-3-270m"}, headers=headers, timeout=30
        )
        created.raise_for_status()
        conversation = created.json()["id"]
        direct(llm, prompt, 8, options)
        ours(api, bearer, conversation, 8, args.question)  # warm-up: the worker loads the model
        floor_rates, our_rates, counts = [], [], []
        for _ in range(args.runs):
            tokens, seconds = direct(llm, prompt, args.max_tokens, options)
            floor_rates.append(tokens / seconds)
            counts.append(tokens)
            conversation = requests.post(
                f"{api}/api/v1/chat/conversations",
                json={"model": "gemma-3-270m"},
                headers=headers,
                timeout=30,
            ).json()["id"]
            tokens, seconds = ours(api, bearer, conversation, args.max_tokens, args.question)
            our_rates.append(tokens / seconds)
            counts.append(tokens)
    floor, pipeline = statistics.median(floor_rates), statistics.median(our_rates)
    print(
        json.dumps(
            {
                "direct_tokens_per_s": floor_rates,
                "pipeline_tokens_per_s": our_rates,
                "tokens (direct, pipeline alternating)": counts,
            }
        )
    )
    print(f"(a) llama-cpp-python directly: {floor:6.1f} tokens/s (median of {args.runs})")
    ratio = 100 * pipeline / floor
    print(f"(b) POST -> final SSE event:   {pipeline:6.1f} tokens/s  = {ratio:.0f}% of (a) (goal >= 90%)")
    results = Results("llm")
    results.add(
        "chat job tokens/s (Gemma 3 270M)",
        pipeline,
        "tokens/s",
        floor=floor,
        floor_name="llama-cpp-python directly",
        goal_ratio=0.9,
    )
    results.write(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
