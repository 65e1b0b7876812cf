"""A plain HTTP server on 127.0.0.1 serving what a test scripts per path: bodies, redirects, slow and
oversized answers (the far end of an outbound fetch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One scripted answer: status, headers, body chunks and a pause before each chunk."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] = ()
    pause_s: float = 0.0
    declare_length: bool = True


def body(data: bytes, content_type: str = "application/octet-stream") -> Answer:
    """A whole body with its Content-Type and Content-Length."""
    return Answer(headers={"Content-Type": content_type}, chunks=[data])


def redirect(location: str, status: int = 302) -> Answer:
    """A redirect to `location`."""
    return Answer(status=status, headers={"Location": location})


class WebOrigin:
    """The server: `answers[path]` is served; `requests` records (method, path, headers)."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.port = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of `path` on this server, under `host` (a name the test maps to 127.0.0.1)."""
        return f"http://{host}:{self.port}{path}"


def _handler(origin: WebOrigin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            origin.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            answer = origin.answers.get(self.path.split("?")[0]) or Answer(status=404, chunks=[b"no"])
            chunks = list(answer.chunks)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.declare_length:
                self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in chunks:
                    if answer.pause_s:
                        time.sleep(answer.pause_s)
                    if answer.declare_length:
                        self.wfile.write(chunk)
                    else:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                if not answer.declare_length:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the guard hung up, as it should on an oversized or slow body

        do_GET = do_POST = do_HEAD = _serve

    return Handler


@contextmanager
def web_origin() -> Iterator[WebOrigin]:
    """Serve a WebOrigin on a free port of 127.0.0.1 for the block."""
    origin = WebOrigin()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(origin))
    server.daemon_threads = True
    origin.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()
