"""A private PostgreSQL server for tests that restart it: its own data directory and port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port


def postgres_bindir() -> Path | None:
    """The directory of `initdb` and `pg_ctl` (on PATH, or Debian's /usr/lib/postgresql/N/bin)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _server_user() -> str | None:
    """initdb refuses to run as root: as root, the cluster belongs to the `postgres` account."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


@dataclass
class PrivateServer:
    """A running private cluster: its URL (database `postgres`) and how to restart it."""

    bindir: Path
    data: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        """The server's log (and pg_ctl's output)."""
        return self.data.parent / "server.log"

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on the cluster, waiting (bounded) for it to finish.

        Output goes to the log file, never to a pipe: the server pg_ctl starts inherits it, and a
        pipe would stay open as long as the server runs."""
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"]
        with self.log.open("ab") as log:
            subprocess.run(
                [*command, *args],
                check=True, user=self.user, cwd=self.data.parent, stdout=log, stderr=subprocess.STDOUT,
                timeout=90,
            )

    def restart(self) -> None:
        """A fast restart: every backend is terminated, the server is back when this returns."""
        self.pg_ctl("-m", "fast", "restart")


@contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    """Start a throw-away cluster on a free port (trust auth, no fsync); stopped and removed after."""
    bindir = postgres_bindir()
    assert bindir is not None, "no PostgreSQL server binaries (pg_ctl, initdb)"
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="cf-pg-"))
    data = base / "data"
    server = PrivateServer(bindir, data, free_port(), user)
    server.log.touch()
    if user:
        shutil.chown(base, user=user)
        shutil.chown(server.log, user=user)
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
             "-E", "UTF8"],
            check=True, user=user, cwd=base, capture_output=True, timeout=120,
        )
        options = (
            f"-p {server.port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        server.pg_ctl("-o", options, "start")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
