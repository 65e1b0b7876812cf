"""The catalog model a job was quoted for, as its `run` step needs it."""

from __future__ import annotations

from assistant.catalog import ModelSpec, ensure_loaded, load_models
from orchestration.context import RunContext
from orchestration.errors import FinalError


def job_model(ctx: RunContext) -> ModelSpec:
    """The job's model from the catalog; FinalError (compensate) if it is gone or unavailable."""
    services = ctx.services
    ensure_loaded(services.sessions, services.settings)
    with services.sessions() as session:
        spec = next((m for m in load_models(session, services.settings) if m.id == ctx.params["model"]), None)
    if spec is None or not spec.available:
        raise FinalError(f"model {ctx.params['model']!r} is no longer available")
    return spec
