"""The `vision` job kind: an image and a prompt, answered by a vision-language model (OpenAI-compatible
multimodal chat, billed by usage like chat, streamed as `token` events) or, where none is reachable, by the
local analyser `inspect-local`, which reports only what it computes (priced per image).

The image is fetched (through the outbound guard), checked and downscaled when the job is created, so the
quote counts the tokens of the pixels the model will see, and the job carries exactly those bytes."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, update

from assistant.pricing import chat_hold
from assistant.providers import ProviderError
from assistant.providers import inspect as analyser
from assistant.reply import stream_reply
from assistant.selection import ModelUnavailable, by_cost_mode
from assistant.specs import ModelSpec
from assistant.transcript import Turn, token_bound
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.images.intake import checked_image
from orchestration.jobs.create import CreateJob, create_job
from orchestration.jobs.kinds import JobKind, Quote, QuoteError
from orchestration.jobs.models import catalog_models, job_model, work_queue
from orchestration.replies.model_reply import JobSink
from orchestration.services import Services
from orchestration.tables import jobs

PRICE_VERSION_KEY = "price_version"


@dataclass(frozen=True)
class StartAnalysis:
    """Command: analyse one image (by URL or base64) with `prompt`, on `model` or the default."""

    user_id: str
    prompt: str
    image_url: str | None = None
    image_base64: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    idempotency_key: str | None = None
    api_key_id: str | None = None
    daily_credit_limit: int | None = None
    dry_run: bool = False

    def request(self) -> dict[str, Any]:
        """What the client asked for (an Idempotency-Key replay compares it; the image by its hash)."""
        image = hashlib.sha256(self.image_base64.encode()).hexdigest() if self.image_base64 else None
        return {
            "prompt": self.prompt,
            "image_url": self.image_url,
            "image_sha256": image,
            "model": self.model,
            "max_tokens": self.max_tokens,
        }


def is_vlm(spec: ModelSpec) -> bool:
    """A chat model that reads images (OpenAI-compatible `image_url` content parts)."""
    return spec.kind == "chat" and bool(spec.capabilities.get("vision"))


def vision_models(models: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The available, priced models that can analyse an image: VLMs and the local analyser."""
    return [m for m in models if m.available and m.priced and (is_vlm(m) or m.kind == "vision")]


def choose_model(models: Sequence[ModelSpec], explicit: str | None) -> ModelSpec:
    """The named model, else the balanced choice among VLMs, else the local analyser."""
    usable = vision_models(models)
    names = sorted(m.id for m in usable)
    if explicit is not None:
        found = next((m for m in usable if m.id == explicit), None)
        if found is None:
            raise ModelUnavailable(f"model {explicit!r} can't analyse images here", names)
        return found
    vlms = [m for m in usable if is_vlm(m)]
    if vlms:
        return by_cost_mode(vlms, "balanced")
    if not usable:
        raise ModelUnavailable("no model can analyse images here", names)
    return usable[0]


def start_analysis(services: Services, command: StartAnalysis) -> Row[Any]:
    """Check and downscale the image, quote its tokens, hold and enqueue a `vision` job."""
    settings = services.settings
    spec = choose_model(catalog_models(services), command.model)
    rule = spec.capabilities.get("image")
    if not isinstance(rule, Mapping):
        raise QuoteError(f"model {spec.id} has no image rule (capabilities.image) to count an image's tokens")
    image = checked_image(settings, rule, image_url=command.image_url, image_base64=command.image_base64)
    params: dict[str, Any] = {
        "model": spec.id,
        "prompt": command.prompt,
        "image": {
            "media_type": image.media_type,
            "data": base64.b64encode(image.data).decode(),
            "format": image.format,
            "original_size": {"width": image.original_size[0], "height": image.original_size[1]},
            "size": {"width": image.size[0], "height": image.size[1]},
            "tokens": image.tokens,
            "exif": dict(image.exif),
        },
        "pricing": dict(spec.pricing),
        PRICE_VERSION_KEY: spec.price_version,
        "queue": work_queue(spec) if is_vlm(spec) else "local",  # the analyser computes: a prefork slot
        "time_limit_s": settings.INTERACTIVE_TIME_LIMIT_S,
    }
    if is_vlm(spec):
        max_tokens = command.max_tokens or min(settings.CHAT_DEFAULT_MAX_TOKENS, spec.context_length // 2)
        prompt_tokens = token_bound([Turn(role="user", content=command.prompt)]) + image.tokens
        if prompt_tokens + max_tokens > spec.context_length:
            raise QuoteError(
                f"the prompt and image ({prompt_tokens} tokens at most) and max_tokens ({max_tokens}) don't "
                f"fit {spec.id}'s context of {spec.context_length} tokens"
            )
        params.update(max_tokens=max_tokens, prompt_tokens=prompt_tokens)
    row, _created = create_job(
        services,
        CreateJob(
            user_id=command.user_id,
            kind="vision",
            params=params,
            request=command.request(),
            idempotency_key=command.idempotency_key,
            api_key_id=command.api_key_id,
            daily_credit_limit=command.daily_credit_limit,
            dry_run=command.dry_run,
        ),
    )
    return row


def price(params: Mapping[str, Any]) -> Quote:
    """VLM: the prompt's bound with the image's tokens, and max_tokens; the analyser: its price per image."""
    pricing, image = params["pricing"], params["image"]
    details: dict[str, Any] = {
        "model": params["model"],
        "image_tokens": int(image["tokens"]),
        "image_size": dict(image["size"]),
        "original_size": dict(image["original_size"]),
        **{k: int(v) for k, v in pricing.items()},
    }
    if "per_image" in pricing:
        amount = max(1, int(pricing["per_image"]))
    else:
        amount = chat_hold(
            pricing, prompt_tokens=int(params["prompt_tokens"]), max_tokens=int(params["max_tokens"])
        )
        details.update(prompt_tokens=int(params["prompt_tokens"]), max_tokens=int(params["max_tokens"]))
    return Quote(amount=amount, price_version=str(params[PRICE_VERSION_KEY]), details=details)


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Send the checked image to the model and stream its answer, or run the local analyser."""
    params = ctx.params
    spec = job_model(ctx)
    image = params["image"]
    if not is_vlm(spec):
        report = {
            "model": spec.id,
            "format": image["format"],
            "original_size": image["original_size"],
            "exif": image["exif"],
            **analyser.analyse(base64.b64decode(image["data"])),
        }
        ctx.token(analyser.summary(report))
        ctx.charge(int(params["pricing"]["per_image"]))
        return {"model": spec.id, "analysis": report, "cost": credits_text(ctx.spent)}
    parts = [
        {"type": "text", "text": params["prompt"]},
        {
            "type": "image_url",
            "image_url": {"url": f"data:{image['media_type']};base64,{image['data']}", "detail": "high"},
        },
    ]
    try:
        reply = stream_reply(
            spec,
            [Turn(role="user", content=params["prompt"], parts=parts)],
            max_tokens=int(params["max_tokens"]),
            settings=ctx.services.settings,
            pricing=params["pricing"],
            sink=JobSink(ctx),
            estimated_input=int(params["prompt_tokens"]),
        )
    except ProviderError as exc:
        raise (RetryableError if exc.retryable else FinalError)(str(exc)) from exc
    return {
        **reply,
        "model": spec.id,
        "image": {"size": image["size"], "tokens": image["tokens"]},
        "cost": credits_text(min(int(reply["cost"]), ctx.held)),
    }


def on_settled(db: Connection, row: Row[Any]) -> None:
    """Drop the image's bytes with the charge: a settled job keeps the image's format, sizes and tokens,
    not a copy of the picture (a failed job keeps them until its row goes)."""
    image = dict(row.params.get("image") or {})
    if image.pop("data", None) is not None:
        db.execute(update(jobs).where(jobs.c.id == row.id).values(params={**row.params, "image": image}))


VISION = JobKind(
    name="vision",
    queue="interactive",
    price=price,
    run=run,
    model=lambda params: str(params["model"]),
    route=lambda params: str(params.get("queue", "interactive")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
    restartable=False,  # the user saw part of the answer: a lost worker ends it failed, like a chat turn
    on_settled=on_settled,
)
