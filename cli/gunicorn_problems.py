"""gunicorn's own refusals (request line or headers too long, a malformed request) as problem+json.

gunicorn answers these before the app runs, as text/html; every error of the API is problem+json,
so its one writer of those answers is replaced in the API process.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

from api.errors import PROBLEM_JSON, problem_document


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn.util.write_error sends, as an RFC 9457 problem."""
    body = json.dumps(problem_document(status_int, mesg or reason)).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM_JSON}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)  # type: ignore[no-untyped-call]


def answer_errors_as_problems() -> None:
    """Make gunicorn's workers write their error answers with `write_problem` (call before they start)."""
    util.write_error = write_problem
