"""The catalog model a job was quoted for, as its `run` step needs it."""

from __future__ import annotations

from assistant.catalog import ModelSpec, ensure_loaded, load_models
from orchestration.bootstrap import Services
from orchestration.context import RunContext
from orchestration.errors import FinalError


def catalog_models(services: Services) -> list[ModelSpec]:
    """Every model this environment lists (the catalog file loaded first if it changed)."""
    ensure_loaded(services.uow, services.settings, database=str(services.engine.url))
    with services.uow(autocommit=True) as db:
        return load_models(db, services.settings)


def job_model(ctx: RunContext) -> ModelSpec:
    """The job's model from the catalog; FinalError (compensate) if it is gone or unavailable."""
    spec = next((m for m in catalog_models(ctx.services) if m.id == ctx.params["model"]), None)
    if spec is None or not spec.available:
        raise FinalError(f"model {ctx.params['model']!r} is no longer available")
    return spec
