"""An OpenAI-compatible upstream that streams N tokens at a fixed pace (usage in the last chunk).

Run: python -m tests.support.paced_upstream --port 9000 --tokens 64 --interval-ms 10
Each token is the text "tok " (so a reader counts tokens by counting "tok"); `max_tokens` (or
`max_completion_tokens`) caps how many. Streams follow an absolute schedule (start + i x interval),
so a busy machine delays tokens but never slows the pace that follows. A plain ASGI app on uvicorn:
hundreds of concurrent streams cost it little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

TOKEN = "tok "

Scope = dict[str, Any]


def make_app(tokens: int, interval_s: float) -> Any:
    """The ASGI app."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["method"] == "GET":
            await _json(send, 200, {"object": "list", "data": [{"id": "paced", "object": "model"}]})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        count = min(tokens, int(body.get("max_completion_tokens") or body.get("max_tokens") or tokens))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages", []))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": count,
            "total_tokens": prompt_tokens + count,
        }
        base = {"id": "chatcmpl-paced", "created": int(time.time()), "model": body.get("model", "paced")}
        finish = "length" if count < tokens else "stop"
        if not body.get("stream"):
            await asyncio.sleep(count * interval_s)
            message = {"role": "assistant", "content": TOKEN * count}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            await _json(send, 200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        chunk = {**base, "object": "chat.completion.chunk"}

        async def event(payload: dict[str, Any]) -> None:
            data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        start = time.monotonic()
        for index in range(count):
            delay = start + (index + 1) * interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await event(
                {**chunk, "choices": [{"index": 0, "delta": {"content": TOKEN}, "finish_reason": None}]}
            )
        await event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            await event({**chunk, "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    return app


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    app = make_app(args.tokens, args.interval_ms / 1000)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
