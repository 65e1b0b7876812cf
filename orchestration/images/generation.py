"""The `image` job kind: one image from a prompt, on the model's provider, priced exactly before it starts.

The quote is `steps x step price` for the requested size (assistant/images.py); the job holds it and is
charged by how it ends (README "Images"): the quote for an image delivered, nothing when it never
started or the provider or we failed, nothing when moderated, the steps done when canceled mid-way."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from assistant.images import ImageLimitError, check_request, image_price, step_price
from assistant.providers.images import ImageRequest, image_provider, provider_name, upstream_name
from assistant.specs import ModelSpec
from orchestration.context import RunContext
from orchestration.images.polling import generate
from orchestration.jobs.create import CreateJob, create_job
from orchestration.jobs.kinds import JobKind, Quote, QuoteError
from orchestration.jobs.models import catalog_models, job_model
from orchestration.services import Services


class InvalidImageRequest(QuoteError):
    """The request breaks its model's limits (422, nothing held); `errors` names each field."""

    def __init__(self, problem: ImageLimitError) -> None:
        super().__init__(str(problem))
        self.errors = problem.errors


@dataclass(frozen=True)
class StartImage:
    """Command: make one image of `width` x `height` from `prompt` with `model`."""

    user_id: str
    prompt: str
    model: str
    width: int
    height: int
    steps: int | None = None
    seed: int | None = None
    guidance: float | None = None
    idempotency_key: str | None = None
    api_key_id: str | None = None
    daily_credit_limit: int | None = None

    def request(self) -> dict[str, Any]:
        """What the client asked for (an Idempotency-Key replay compares it)."""
        return {
            "prompt": self.prompt,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": self.seed,
            "guidance": self.guidance,
        }


def _image_model(services: Services, name: str) -> ModelSpec:
    spec = next((m for m in catalog_models(services) if m.id == name and m.kind == "image"), None)
    if spec is None:
        raise QuoteError(f"unknown image model {name!r}")
    if not spec.priced:
        raise QuoteError(f"image model {name!r} has no price; it is refused, never free")
    if not spec.available:
        raise QuoteError(f"image model {name!r} is not available here (its provider is not configured)")
    return spec


def image_params(services: Services, command: StartImage) -> dict[str, Any]:
    """The job's params: the checked request, its provider, and the prices it was quoted at."""
    spec = _image_model(services, command.model)
    try:
        ask = check_request(
            spec,
            prompt=command.prompt,
            width=command.width,
            height=command.height,
            steps=command.steps,
            seed=command.seed,
            guidance=command.guidance,
            default_seed=secrets.randbelow(2**32),
        )
    except ImageLimitError as exc:
        raise InvalidImageRequest(exc) from exc
    provider = provider_name(spec, services.settings)
    return {
        **ask.as_json(),
        "model": spec.id,
        "provider": provider,
        "upstream": upstream_name(spec, provider),
        "pricing": dict(spec.pricing),
        "price_version": spec.price_version,
        # CPU-bound renders go where cores are counted; remote ones only wait (the I/O pool).
        "queue": "local" if spec.capabilities.get("local") else "images",
        "time_limit_s": services.settings.IMAGES_TIME_LIMIT_S,
    }


def price(params: Mapping[str, Any]) -> Quote:
    """The exact price of the image: steps times the price of one step at its size."""
    size = {"width": int(params["width"]), "height": int(params["height"])}
    per_step = step_price(params["pricing"], **size)
    return Quote(
        amount=image_price(params["pricing"], steps=int(params["steps"]), **size),
        price_version=str(params["price_version"]),
        details={"model": params["model"], **size, "steps": int(params["steps"]), "step_price": per_step},
    )


def quote_image(services: Services, command: StartImage) -> Quote:
    """The cost preview (`?dry_run=true`): the same checks and quote, nothing held or created."""
    return price(image_params(services, command))


def start_image(services: Services, command: StartImage) -> Row[Any]:
    """Check and quote the request, hold the quote, create the job and enqueue it."""
    job = CreateJob(
        user_id=command.user_id,
        kind="image",
        params=image_params(services, command),
        idempotency_key=command.idempotency_key,
        api_key_id=command.api_key_id,
        daily_credit_limit=command.daily_credit_limit,
        request=command.request(),
    )
    row, _created = create_job(services, job)
    return row


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Generate the image on its provider (resuming the stored upstream generation if there is one)."""
    params = ctx.params
    spec = job_model(ctx)
    request = ImageRequest(
        upstream=str(params["upstream"]),
        prompt=str(params["prompt"]),
        width=int(params["width"]),
        height=int(params["height"]),
        steps=int(params["steps"]),
        seed=int(params["seed"]),
        guidance=float(params["guidance"]),
    )
    per_step = step_price(params["pricing"], width=request.width, height=request.height)
    result = generate(
        ctx, image_provider(str(params["provider"])), request, model=spec.id, step_price=per_step
    )
    return {**result, "model": spec.id, "provider": params["provider"], "seed": request.seed}


IMAGE = JobKind(
    name="image",
    queue="images",
    price=price,
    run=run,
    model=lambda params: str(params["model"]),
    route=lambda params: str(params.get("queue", "images")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
    resumable=True,  # a lost worker's job is queued again and polls the generation it stored
)
