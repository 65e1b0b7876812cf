"""The catalog model a job was quoted for, as its `run` step needs it."""

from __future__ import annotations

import threading
import time

from assistant.catalog import ModelSpec, ensure_loaded, load_models
from orchestration.bootstrap import Services
from orchestration.context import RunContext
from orchestration.errors import FinalError


def catalog_models(services: Services) -> list[ModelSpec]:
    """Every model this environment lists (the catalog file loaded first if it changed)."""
    ensure_loaded(services.uow, services.settings, database=str(services.engine.url))
    with services.uow(autocommit=True) as db:
        return load_models(db, services.settings)


def work_queue(spec: ModelSpec, io_queue: str = "interactive") -> str:
    """Where a job on this model runs: `local` (a prefork pool, cores counted) for a model computed on
    the worker's own CPU, else the I/O pool's queue (the model is remote: the job only waits)."""
    return "local" if spec.provider == "local" else io_queue


# A running job needs its model's provider and options, not its prices (frozen into the job): a catalog
# a few seconds old serves every job of a worker process instead of two database reads per job.
RUN_CATALOG_TTL_S = 5.0
_run_catalog: dict[int, tuple[float, list[ModelSpec]]] = {}
_run_catalog_lock = threading.Lock()


def _recent_catalog(services: Services) -> list[ModelSpec]:
    now = time.monotonic()
    with _run_catalog_lock:
        cached = _run_catalog.get(id(services))
    if cached is None or now - cached[0] > RUN_CATALOG_TTL_S:
        cached = (now, catalog_models(services))
        with _run_catalog_lock:
            _run_catalog[id(services)] = cached
    return cached[1]


def job_model(ctx: RunContext) -> ModelSpec:
    """The job's model from the catalog; FinalError (compensate) if it is gone or unavailable."""
    spec = next((m for m in _recent_catalog(ctx.services) if m.id == ctx.params["model"]), None)
    if spec is None or not spec.available:
        raise FinalError(f"model {ctx.params['model']!r} is no longer available")
    return spec
