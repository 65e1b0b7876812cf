"""Shared fixtures: throw-away databases on every configured backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from runtime.db import make_engine
from runtime.local import embedded_redis_url, stop_embedded_redis
from runtime.migrate import upgrade
from runtime.settings import load_settings
from tests.support.databases import backends, fresh_database, postgres_url

# The suite runs dozens of processes against one PostgreSQL (max_connections is 100 by default): small
# pools in every Services of the test process and of the processes it starts (child_env copies this),
# which also shows a few connections serve a pool of hundreds of threads.
os.environ.setdefault("DATABASE_POOL_SIZE", "3")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n N`), each test process gets a Redis database and a PostgreSQL database of its
    own (REDIS_URL's number + N, DATABASE_URL's name + "_gwN"): their Celery workers then never take each
    other's messages, and session-wide rows stay apart. gw0 keeps the configured ones."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    if index == 0:
        return
    redis = os.environ.get("REDIS_URL")
    if redis:
        parts = urlsplit(redis)
        number = int(parts.path.strip("/") or 0) + index
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{number}"))
    base = postgres_url()
    if base:
        url = make_url(base)
        name = f"{url.database}_{worker}"
        server = url.set(drivername="postgresql+psycopg", database="postgres")
        admin = make_engine(server.render_as_string(hide_password=False))
        admin = admin.execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        os.environ["DATABASE_URL"] = url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per backend (SQLite, and PostgreSQL when configured)."""
    return str(request.param)


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, migrated database of the current backend."""
    with fresh_database(backend, tmp_path) as db:
        yield db


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when the suite runs against a real server, else an embedded Redis for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    var_dir = tmp_path_factory.mktemp("redis")
    yield embedded_redis_url(var_dir)
    stop_embedded_redis(var_dir)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """DATABASE_URL when configured, else a SQLite file for the session (migrated)."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'suite.db'}"
    engine = make_engine(load_settings(DATABASE_URL=url).database_url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh migrated database for one test module (PostgreSQL when configured, else SQLite), so a
    reaper sweep with its clock set ahead acts on that module's rows only."""
    backend = "postgresql" if postgres_url() else "sqlite"
    with fresh_database(backend, Path(tmp_path_factory.mktemp("moduledb")), pool_size=5) as engine:
        yield engine.url.render_as_string(hide_password=False)
