"""moto's server mode on 127.0.0.1: a real S3 wire protocol (signed requests, XML answers) for boto3."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port, wait_http


@contextmanager
def s3_server(log: Path) -> Iterator[str]:
    """`moto_server` on a free port; its endpoint URL while the block runs."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/", process=process, log=log)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
