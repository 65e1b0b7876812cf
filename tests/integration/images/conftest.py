"""Fixtures of the image tests: one set of real workers and one API for the whole package (CI budget),
the local providers' protocol server started before them, and users with the welcome credits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from assistant.catalog import DEFAULT_CATALOG
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.api_user import ApiUser
from tests.support.databases import fresh_database, postgres_url
from tests.support.image_providers import ProviderServer, provider_server
from tests.support.processes import ROOT, api_server, child_env, worker

JWT_SECRET = "images-test-secret-images-test-secret-0123"


@pytest.fixture(scope="package")
def providers() -> Iterator[ProviderServer]:
    """One local server speaking BFL's, fal's, Replicate's and OpenAI's image protocols."""
    with provider_server() as server:
        yield server


# The flux models once per remote provider, so one set of workers exercises all four protocols.
PROVIDER_MODELS = {
    "flux-schnell": "bfl",
    "flux-schnell-fal": "fal",
    "flux-dev-replicate": "replicate",
    "flux-schnell-openai": "openai",
}


def catalog_with_providers(directory: Path) -> Path:
    """The default catalog, plus the flux models served by each remote provider."""
    document = yaml.safe_load(DEFAULT_CATALOG.read_text())
    flux = {entry["id"]: entry for entry in document["models"]}
    for model, provider in {**PROVIDER_MODELS, "flux-dev-fal": "fal"}.items():
        if model not in flux:
            base = dict(flux["flux-dev" if "dev" in model else "flux-schnell"])
            document["models"].append({**base, "id": model, "provider": provider})
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="package")
def image_env(
    redis_url: str, providers: ProviderServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Environment of the workers and the API: a database of the package's own, images in a directory."""
    backend = "postgresql" if postgres_url() else "sqlite"
    with fresh_database(backend, Path(tmp_path_factory.mktemp("imagedb")), pool_size=5) as engine:
        var = tmp_path_factory.mktemp("var")
        yield child_env(
            REDIS_URL=redis_url,
            DATABASE_URL=engine.url.render_as_string(hide_password=False),
            AUTH_JWT_SECRET=JWT_SECRET,
            VAR_DIR=str(var),
            IMAGE_STORAGE_DIR=str(var / "images"),
            CREDITFLOW_ENV="test",
            SSE_HEARTBEAT_S="1",
            JOB_HEARTBEAT_S="0.5",
            JOB_HEARTBEAT_TIMEOUT_S="3",
            TASK_MAX_REDELIVERIES="2",
            RATE_LIMIT_JOBS="1000/minute",
            API_WORKERS="1",
            IMAGE_POLL_INTERVAL_S="0.05",
            IMAGES_OPENAI_PARTIAL_IMAGES="2",  # OpenAI's calls streamed: partial images are previews
            ASSISTANT_CATALOG=str(catalog_with_providers(var)),
            **providers.settings(),
        )


@pytest.fixture(scope="package")
def services(image_env: dict[str, str]) -> Iterator[Services]:
    """The test process's own services on the workers' database and Redis."""
    names = (
        "REDIS_URL",
        "DATABASE_URL",
        "AUTH_JWT_SECRET",
        "VAR_DIR",
        "IMAGE_STORAGE_DIR",
        "ASSISTANT_CATALOG",
    )
    heartbeats = {
        "JOB_HEARTBEAT_S": 0.5,
        "JOB_HEARTBEAT_TIMEOUT_S": 3.0,
    }  # as the workers': the reaper's view
    built = bootstrap(load_settings(**{name: image_env[name] for name in names}, **heartbeats))
    yield built
    built.close()


@pytest.fixture(scope="package")
def workers(image_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Real workers: critical (prefork), local renders (prefork, one slot), remote polls (threads)."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical", env=image_env, cwd=ROOT, log=logs / "critical.log", name="crit", concurrency=1),
        worker(
            "local", env=image_env, cwd=ROOT, log=logs / "local.log", name="local", concurrency=1
        ) as local,
        worker("images", env=image_env, cwd=ROOT, log=logs / "images.log", name="img", concurrency=20) as io,
    ):
        yield {"local": local, "images": io, "logs": logs}


@pytest.fixture(scope="package")
def api(image_env: dict[str, str], workers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`creditflow api` on a free port, with the workers running."""
    with api_server(env=image_env, log=tmp_path_factory.mktemp("api") / "api.log") as base:
        yield base


class Client(ApiUser):
    """A user of the API making images."""

    def __init__(self, base: str) -> None:
        super().__init__(base, JWT_SECRET)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def generate(self, **body: Any) -> requests.Response:
        return self.post("/api/v1/images/generations", body)

    def available(self) -> str:
        return str(self.get("/api/v1/credits/balance").json()["available"])
