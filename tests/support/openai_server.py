"""A local HTTP server speaking the OpenAI chat-completions wire protocol (SSE chunks, usage last),
multimodal too: `image_url` content parts (data: URLs) are decoded, and the reply names what it saw."""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = ["Hello", " from", " the", " fake", " endpoint", "."]
# The model name picks the behaviour: error-429, error-500, error-400, refuse (content filter).
ERRORS = {"error-429": 429, "error-500": 500, "error-400": 400}


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]
    models_delay_s: float = 0.0

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def _json(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self.requests.append({"get": self.path, "auth": self.headers.get("Authorization")})
        time.sleep(self.models_delay_s)  # a slow upstream: concurrent probes overlap
        self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        model = body["model"]
        if model in ERRORS:
            status = ERRORS[model]
            self._json(status, {"error": {"message": f"injected {status}", "type": "test", "code": None}})
            return
        seen = [image for m in body["messages"] for image in _images(m["content"])]
        reply = [" ".join(["I", "see", *seen]) + "."] if seen else REPLY
        words = reply[: body.get("max_completion_tokens") or body.get("max_tokens") or len(reply)]
        prompt_tokens = sum(_text_tokens(m["content"]) + 4 for m in body["messages"])
        prompt_tokens += sum(IMAGE_BASE + IMAGE_TILE * _tiles(image) for image in seen)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
        finish = "content_filter" if model == "refuse" else ("length" if len(words) < len(reply) else "stop")
        chunks = [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
        chunks += [{"index": 0, "delta": {"content": word}, "finish_reason": None} for word in words]
        chunks += [{"index": 0, "delta": {}, "finish_reason": finish}]
        for choice in chunks:
            self._event({**base, "choices": [choice]})
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        self._event({**base, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()


# What the server bills an image, as GPT-4o counts it (85 tokens, and 170 per 512-pixel tile).
IMAGE_BASE, IMAGE_TILE = 85, 170


def _text_tokens(content: Any) -> int:
    if isinstance(content, list):
        return sum(len(str(part.get("text", "")).split()) for part in content if part.get("type") == "text")
    return len(str(content).split())


def _images(content: Any) -> list[str]:
    """Each image part as "<width>x<height>/<FORMAT>", decoded from its data: URL (anything else: "bad")."""
    from PIL import Image

    found = []
    for part in content if isinstance(content, list) else []:
        if part.get("type") != "image_url":
            continue
        url = str(part["image_url"]["url"])
        try:
            header, data = url.split(",", 1)
            assert header.startswith("data:image/")
            assert header.endswith(";base64")
            with Image.open(io.BytesIO(base64.b64decode(data))) as image:
                found.append(f"{image.width}x{image.height}/{image.format}")
        except (AssertionError, ValueError, OSError):
            found.append("bad")
    return found


def _tiles(seen: str) -> int:
    if seen == "bad":
        return 0
    width, height = (int(n) for n in seen.split("/", maxsplit=1)[0].split("x"))
    return math.ceil(width / 512) * math.ceil(height / 512)


@contextmanager
def openai_server(*, models_delay_s: float = 0.0) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve on a free port; yields (base URL ending in /v1, the requests received)."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"requests": received, "models_delay_s": models_delay_s})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()
