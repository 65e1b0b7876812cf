"""A local HTTP server speaking four image providers' real protocols: Black Forest Labs (x-key,
polling_url, Pending/Ready/moderation, 429 retry_after, 402), fal's queue (IN_QUEUE queue_position,
IN_PROGRESS logs, COMPLETED, PUT cancel), Replicate predictions (starting/processing/succeeded...,
Cancel-After, tqdm logs, cancel) and OpenAI images (b64_json, content_policy_violation).

A generation advances with time (queue, then steps), as upstream, whether or not anyone polls: a worker
killed mid-poll comes back to a generation that went on. Bracketed words in the prompt choose what goes
wrong: [queue] waits in line first, [slow] takes 0.25 s a step, [moderate] ends moderated, [fail] ends
in an error, [busy] answers the first submit 429, [broke] makes BFL answer 402, [flaky] answers every
other poll 503, [expire] serves an expired result link, [expire-once] expires only the first link."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

KEYS = {
    "bfl": "bfl-test-key",
    "fal": "fal-test-key",
    "replicate": "r8-test-token",
    "openai": "sk-images-test",
}
STEP_S, SLOW_STEP_S, QUEUE_S = 0.03, 0.25, 0.6


@dataclass
class Generation:
    """One upstream generation."""

    id: str
    provider: str
    prompt: str
    steps: int
    width: int
    height: int
    started: float = field(default_factory=time.monotonic)
    canceled: bool = False
    polls: int = 0
    links: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def has(self, flag: str) -> bool:
        return f"[{flag}]" in self.prompt

    @property
    def queue_s(self) -> float:
        return QUEUE_S if self.has("queue") else 0.0

    @property
    def step_s(self) -> float:
        return SLOW_STEP_S if self.has("slow") else STEP_S

    def phase(self) -> tuple[str, int]:
        """("queued", position) / ("running", steps done) / ("done", steps) / ("canceled", steps)."""
        elapsed = time.monotonic() - self.started
        if self.canceled:
            return "canceled", 0
        if elapsed < self.queue_s:
            return "queued", 1 + int((self.queue_s - elapsed) / 0.1)
        done = int((elapsed - self.queue_s) / self.step_s)
        return ("done", self.steps) if done >= self.steps else ("running", done)


class ProviderServer:
    """The server's state: what was submitted, polled, canceled and downloaded."""

    def __init__(self) -> None:
        self.base = ""
        self.generations: dict[str, Generation] = {}
        self.submits: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        self.downloads: list[str] = []
        self.busy_seen: set[str] = set()
        self.lock = threading.Lock()

    def settings(self) -> dict[str, str]:
        """The settings that point creditflow at this server."""
        return {
            "BFL_API_KEY": KEYS["bfl"],
            "BFL_API_BASE": f"{self.base}/bfl",
            "FAL_KEY": KEYS["fal"],
            "FAL_QUEUE_BASE": f"{self.base}/fal",
            "REPLICATE_API_TOKEN": KEYS["replicate"],
            "REPLICATE_API_BASE": f"{self.base}/replicate",
            "IMAGES_OPENAI_BASE_URL": f"{self.base}/openai/v1",
            "IMAGES_OPENAI_API_KEY": KEYS["openai"],
        }

    def of_prompt(self, prompt: str) -> list[Generation]:
        """The generations made for a prompt (one per upstream submit)."""
        with self.lock:
            return [g for g in self.generations.values() if g.prompt == prompt]

    def new(self, provider: str, body: dict[str, Any], headers: dict[str, str]) -> Generation:
        source = body.get("input", body)
        size = source.get("image_size") or {}
        if isinstance(source.get("size"), str):  # OpenAI's "WxH"
            width_text, _, height_text = source["size"].partition("x")
            size = {"width": int(width_text), "height": int(height_text)}
        width = int(source.get("width") or size.get("width") or 64)
        height = int(source.get("height") or size.get("height") or 64)
        steps = int(source.get("steps") or source.get("num_inference_steps") or 4)
        gen = Generation(
            uuid.uuid4().hex, provider, str(source["prompt"]), steps, width, height, headers=headers
        )
        with self.lock:
            self.generations[gen.id] = gen
            self.submits.append({"provider": provider, "body": body, "id": gen.id})
        return gen

    def link(self, gen: Generation) -> str:
        gen.links += 1
        return f"{self.base}/files/{gen.id}-{gen.links}.png"


def png(width: int, height: int, prompt: str) -> bytes:
    """A small solid image (its colour from the prompt) of the requested size."""
    colour = tuple(sum(map(ord, prompt)) * k % 256 for k in (3, 5, 7))
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def _tqdm(done: int, total: int) -> str:
    percent = int(100 * done / total)
    bar = "#" * (percent // 10)
    return f"{percent:3d}%|{bar:<10}| {done}/{total} [00:01<00:0{max(0, total - done) % 10}, 8.00it/s]"


class _Handler(BaseHTTPRequestHandler):
    state: ProviderServer

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def _send(self, status: int, body: Any, content_type: str = "application/json", **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _authorized(self, provider: str) -> bool:
        expected = {
            "bfl": ("x-key", KEYS["bfl"]),
            "fal": ("Authorization", f"Key {KEYS['fal']}"),
            "replicate": ("Authorization", f"Bearer {KEYS['replicate']}"),
            "openai": ("Authorization", f"Bearer {KEYS['openai']}"),
        }[provider]
        if self.headers.get(expected[0]) == expected[1]:
            return True
        self._send(401, {"detail": "bad credentials"})
        return False

    def _gen(self, gen_id: str, *, poll: bool = False) -> Generation | None:
        with self.state.lock:
            gen = self.state.generations.get(gen_id)
        if gen is None:
            self._send(404, {"detail": "not found"})
        elif poll and gen.has("flaky"):
            gen.polls += 1
            if gen.polls % 2:
                self._send(503, {"detail": "upstream busy"})
                return None
        return gen

    def _busy(self, body: dict[str, Any]) -> bool:
        prompt = str(body.get("input", body).get("prompt", ""))
        if "[busy]" in prompt and prompt not in self.state.busy_seen:
            self.state.busy_seen.add(prompt)
            self._send(429, {"detail": "rate limited", "retry_after": 0.3}, Retry_After="1")
            return True
        return False

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        provider = path.split("/")[1]
        if provider not in KEYS or not self._authorized(provider):
            if provider not in KEYS:
                self._send(404, {"detail": "no route"})
            return
        if provider == "replicate" and path.endswith("/cancel"):
            gen = self._gen(path.split("/")[-2])
            if gen is not None:
                gen.canceled = True
                self.state.cancels.append(gen.id)
                self._send(200, self._prediction(gen))
            return
        body = self._body()
        if self._busy(body):
            return
        if provider == "bfl" and "[broke]" in str(body.get("prompt")):
            self._send(402, {"detail": "Insufficient credits"})
            return
        gen = self.state.new(provider, body, dict(self.headers.items()))
        base = self.state.base
        if provider == "bfl":
            self._send(
                200, {"id": gen.id, "polling_url": f"{base}/bfl/v1/get_result?id={gen.id}", "cost": 1.5}
            )
        elif provider == "replicate":
            self._send(201, self._prediction(gen))
        elif provider == "fal":
            root = f"{base}{path}/requests/{gen.id}"
            self._send(
                200,
                {
                    "request_id": gen.id,
                    "status_url": f"{root}/status",
                    "response_url": root,
                    "cancel_url": f"{root}/cancel",
                },
            )
        else:
            self._openai(gen, int(body.get("partial_images") or 0) if body.get("stream") else None)

    def _openai(self, gen: Generation, partials: int | None) -> None:
        if partials and not gen.has("moderate") and not gen.has("fail"):
            self._openai_stream(gen, partials)
            return
        time.sleep(gen.steps * gen.step_s)
        if gen.has("moderate"):
            error = {
                "message": "Your request was rejected by the safety system.",
                "code": "content_policy_violation",
            }
            self._send(400, {"error": {**error, "type": "invalid_request_error"}})
        elif gen.has("fail"):
            self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        else:
            encoded = base64.b64encode(png(gen.width, gen.height, gen.prompt)).decode()
            self._send(200, {"created": int(time.time()), "data": [{"b64_json": encoded}]})

    def _openai_stream(self, gen: Generation, partials: int) -> None:
        """Server-sent events: `partial_images` previews, then the completed image."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        image = png(gen.width, gen.height, gen.prompt)
        events = [
            ("image_generation.partial_image", {"partial_image_index": index}) for index in range(partials)
        ]
        for kind, extra in [*events, ("image_generation.completed", {})]:
            time.sleep(gen.steps * gen.step_s / (partials + 1))
            data = {"type": kind, "b64_json": base64.b64encode(image).decode(), **extra}
            self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    def _prediction(self, gen: Generation) -> dict[str, Any]:
        phase, done = gen.phase()
        root = f"{self.state.base}/replicate/v1/predictions/{gen.id}"
        answer: dict[str, Any] = {
            "id": gen.id,
            "urls": {"get": root, "cancel": f"{root}/cancel"},
            "logs": "",
            "output": None,
            "error": None,
        }
        if phase == "queued":
            return {**answer, "status": "starting"}
        if phase == "canceled":
            return {**answer, "status": "canceled"}
        if phase == "running":
            logs = "\n".join(_tqdm(step, gen.steps) for step in range(done + 1))
            return {**answer, "status": "processing", "logs": f"Using seed: 1\n{logs}"}
        if gen.has("moderate"):
            return {**answer, "status": "failed", "error": "NSFW content detected. Try running it again."}
        if gen.has("fail"):
            return {**answer, "status": "failed", "error": "CUDA out of memory"}
        return {**answer, "status": "succeeded", "output": [self.state.link(gen)]}

    def do_PUT(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/fal/") or not path.endswith("/cancel") or not self._authorized("fal"):
            return
        gen = self._gen(path.split("/")[-2])
        if gen is None:
            return
        if gen.phase()[0] == "done":
            self._send(400, {"status": "ALREADY_COMPLETED"})
            return
        gen.canceled = True
        self.state.cancels.append(gen.id)
        self._send(202, {"status": "CANCELLATION_REQUESTED"})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/files/"):
            self._file(path.removeprefix("/files/").removesuffix(".png"))
        elif path.startswith("/bfl/v1/get_result") and self._authorized("bfl"):
            gen = self._gen(parse_qs(parts.query).get("id", [""])[0], poll=True)
            if gen is not None:
                self._send(200, self._bfl(gen))
        elif path.startswith("/replicate/v1/predictions/") and self._authorized("replicate"):
            gen = self._gen(path.split("/")[-1], poll=True)
            if gen is not None:
                self._send(200, self._prediction(gen))
        elif path.startswith("/fal/") and "/requests/" in path and self._authorized("fal"):
            self._fal(path)
        else:
            self._send(404, {"detail": "no route"})

    def _bfl(self, gen: Generation) -> dict[str, Any]:
        phase, done = gen.phase()
        if phase == "queued":
            return {"id": gen.id, "status": "Pending", "result": None, "progress": None}
        if phase == "running":
            return {"id": gen.id, "status": "Pending", "result": None, "progress": done / gen.steps}
        if gen.has("moderate"):
            return {
                "id": gen.id,
                "status": "Content Moderated",
                "result": None,
                "details": {"moderation": ["nsfw"]},
            }
        if gen.has("fail"):
            return {"id": gen.id, "status": "Error", "result": None, "details": "generation failed"}
        return {"id": gen.id, "status": "Ready", "result": {"sample": self.state.link(gen), "seed": 1}}

    def _fal(self, path: str) -> None:
        tail = path.split("/requests/")[1].split("/")
        gen = self._gen(tail[0], poll=tail[-1] == "status")
        if gen is None:
            return
        phase, done = gen.phase()
        if len(tail) > 1 and tail[1] == "status":
            if phase == "queued":
                self._send(202, {"status": "IN_QUEUE", "queue_position": done, "request_id": gen.id})
            elif phase == "running":
                logs = [{"message": _tqdm(step, gen.steps), "level": "INFO"} for step in range(done + 1)]
                self._send(202, {"status": "IN_PROGRESS", "logs": logs, "request_id": gen.id})
            elif phase == "canceled":
                self._send(
                    200, {"status": "COMPLETED", "error": "Request was cancelled", "request_id": gen.id}
                )
            elif gen.has("fail"):
                self._send(200, {"status": "COMPLETED", "error": "Internal error", "request_id": gen.id})
            else:
                self._send(200, {"status": "COMPLETED", "logs": [], "request_id": gen.id})
            return
        if phase != "done":
            self._send(400, {"detail": "Request is still in progress"})
            return
        image = {
            "url": self.state.link(gen),
            "width": gen.width,
            "height": gen.height,
            "content_type": "image/png",
        }
        self._send(200, {"images": [image], "has_nsfw_concepts": [gen.has("moderate")], "seed": 1})

    def _file(self, name: str) -> None:
        gen_id, _, link = name.partition("-")
        with self.state.lock:
            gen = self.state.generations.get(gen_id)
        self.state.downloads.append(name)
        if gen is None or gen.has("expire") or (gen.has("expire-once") and link == "1"):
            self._send(
                403,
                b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                "application/xml",
            )
            return
        self._send(200, png(gen.width, gen.height, gen.prompt), "image/png")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark's 32 users and our 64 polling threads connect at once


@contextmanager
def provider_server() -> Iterator[ProviderServer]:
    """The server on a free port of 127.0.0.1, for as long as the block runs."""
    state = ProviderServer()
    handler = type("Handler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
