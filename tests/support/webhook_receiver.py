"""A webhook receiver on 127.0.0.1 for tests: records every request and answers what each path's script
says (a list of (status, headers) consumed in order, the last one repeated)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """The server's URL, its scripts by path and what it received."""

    base: str
    scripts: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    # Seconds the first request on a path is held before its answer (a receiver that hangs).
    holds: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Received]:
        """What arrived on `path`, in order."""
        with self.lock:
            return [item for item in self.received if item.path == path]

    def wait(self, path: str, count: int, timeout: float = 30) -> list[Received]:
        """Wait until `count` requests arrived on `path`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.on(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.on(path))} of {count} requests in {timeout}s")


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Serve on a free loopback port until the block ends."""
    receiver = Receiver(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with receiver.lock:
                receiver.received.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                    )
                )
                script = receiver.scripts.get(self.path) or [(200, {})]
                status, headers = script.pop(0) if len(script) > 1 else script[0]
                hold = receiver.holds.pop(self.path, 0.0)
            time.sleep(hold)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # a held request does not hold the test's end
    server.block_on_close = False
    receiver.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
