"""The catalog model a job was quoted for, as its `run` step needs it."""

from __future__ import annotations

import threading
import time

from assistant.catalog import catalog_path, ensure_loaded, load_models
from assistant.specs import ModelSpec
from orchestration.context import RunContext
from orchestration.errors import FinalError
from orchestration.services import Services

# The catalog changes when its file does (each process loads the file into the database): a list at
# most this old, of the same file version, serves every request and job of a process instead of a
# database read and an availability check of every model each time.
CATALOG_TTL_S = 2.0
_catalogs: dict[int, tuple[float, float, list[ModelSpec]]] = {}
_catalogs_lock = threading.Lock()


def catalog_models(services: Services) -> list[ModelSpec]:
    """Every model this environment lists (the catalog file loaded first if it changed)."""
    stamp = catalog_path(services.settings).stat().st_mtime
    now = time.monotonic()
    with _catalogs_lock:
        cached = _catalogs.get(id(services))
    if cached is not None and cached[0] == stamp and now - cached[1] < CATALOG_TTL_S:
        return cached[2]
    ensure_loaded(services.uow, services.settings, database=str(services.engine.url))
    with services.uow(autocommit=True) as db:
        found = load_models(db, services.settings)
    with _catalogs_lock:
        _catalogs[id(services)] = (stamp, now, found)
    return found


def work_queue(spec: ModelSpec, io_queue: str = "interactive") -> str:
    """Where a job on this model runs: `local` (a prefork pool, cores counted) for a model computed on
    the worker's own CPU, else the I/O pool's queue (the model is remote: the job only waits)."""
    return "local" if spec.provider == "local" else io_queue


def job_model(ctx: RunContext) -> ModelSpec:
    """The job's model from the catalog; FinalError (compensate) if it is gone or unavailable."""
    spec = next((m for m in catalog_models(ctx.services) if m.id == ctx.params["model"]), None)
    if spec is None or not spec.available:
        raise FinalError(f"model {ctx.params['model']!r} is no longer available")
    return spec
