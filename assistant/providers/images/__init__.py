"""Image providers behind one interface: submit a generation, poll it by its own id, fetch, cancel.

Every provider answers the same `Status` (queued with a position, running with steps, ready with the
image, failed, moderated, canceled), so one polling loop (orchestration/images/polling.py) tells one
progress story whatever the provider. The registry is a table of module names, like the chat
providers' (assistant/providers/__init__.py)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from runtime.settings import Settings

if TYPE_CHECKING:
    from assistant.specs import ModelSpec

MODULES = {
    "sketch": "assistant.providers.images.sketch",
    "bfl": "assistant.providers.images.bfl",
    "fal": "assistant.providers.images.fal",
    "replicate": "assistant.providers.images.replicate",
    "openai": "assistant.providers.images.openai",
}
State = Literal["queued", "running", "ready", "failed", "moderated", "canceled"]


@dataclass(frozen=True)
class ImageRequest:
    """One image to make; `upstream` is the provider's name for the model."""

    upstream: str
    prompt: str
    width: int
    height: int
    steps: int
    seed: int
    guidance: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The request as stored with the generation (to resume it after a worker died)."""
        return {
            "upstream": self.upstream,
            "prompt": self.prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": self.seed,
            "guidance": self.guidance,
        }


@dataclass(frozen=True)
class Handle:
    """A generation the provider accepted: its own id and the URLs it gave to follow and cancel it."""

    provider: str
    request_id: str
    urls: Mapping[str, str] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The handle as stored on the job's generation row before the first poll."""
        return {
            "provider": self.provider,
            "request_id": self.request_id,
            "urls": dict(self.urls),
            "request": dict(self.request),
        }


@dataclass(frozen=True)
class Status:
    """Where a generation stands, in the same words for every provider."""

    state: State
    queue_position: int | None = None
    step: int | None = None
    total: int | None = None
    eta_s: float | None = None
    preview: bytes | None = None  # an intermediate image, when the provider gives one
    result_url: str | None = None
    result: bytes | None = None
    error: str | None = None
    next_poll_s: float | None = None  # None: the poll interval of the settings


class ImageProviderError(Exception):
    """A provider call failed: `retryable` (429, 5xx, timeouts) may pass; `operator` means the
    operator's account or key is the problem (no credit left upstream), never the user's fault."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        operator: bool = False,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code  # the provider's own error code, when it gives one
        self.retryable = retryable
        self.operator = operator
        self.retry_after = retry_after


class ImageProvider(Protocol):
    """What every image provider module offers."""

    def available(self, settings: Settings) -> bool:
        """Whether the provider is configured."""

    def submit(self, request: ImageRequest, settings: Settings) -> Handle:
        """Start a generation; the answer identifies it upstream."""

    def poll(self, handle: Handle, settings: Settings) -> Status:
        """Ask where the generation stands (the local renderer does its next step here)."""

    def download(self, url: str, settings: Settings) -> bytes:
        """The bytes of a finished image at the provider's (expiring) result URL."""

    def cancel(self, handle: Handle, settings: Settings) -> bool:
        """Ask the provider to stop this generation (by its own id); False if it can't."""


def image_provider(name: str) -> ImageProvider:
    """The image provider module named `name`; KeyError for an unknown one."""
    return importlib.import_module(MODULES[name])  # type: ignore[return-value]


def provider_name(spec: ModelSpec, settings: Settings) -> str:
    """Which provider serves this image model (settings over the catalog)."""
    return settings.image_provider_of(spec.id, spec.provider)


def upstream_name(spec: ModelSpec, provider: str) -> str:
    """The provider's name for the model (catalog option `upstream.<provider>`, else the model id)."""
    names: Mapping[str, str] = spec.options.get("upstream") or {}
    return str(names.get(provider, spec.id))


def image_available(spec: ModelSpec, settings: Settings) -> bool:
    """Whether the image model's provider exists and is configured."""
    name = provider_name(spec, settings)
    return name in MODULES and image_provider(name).available(settings)


# tqdm's bar ("45%|####5     | 9/20 [00:01<00:01, 8.1it/s]") and plain "step 9/20" lines, as the
# diffusers pipelines behind Replicate and fal print them.
_STEPS = re.compile(r"(?:(\d+)%\|[^|]*\|\s*)?(?:step\s*)?(\d+)\s*/\s*(\d+)", re.IGNORECASE)
_ETA = re.compile(r"<(\d+):(\d+)")


def steps_from_logs(logs: str) -> tuple[int | None, int | None, float | None]:
    """The last (step, total, eta seconds) a diffusion log shows; Nones when it shows none."""
    for line in reversed(logs.splitlines()):
        found = _STEPS.search(line)
        if found and int(found.group(3)) > 0:
            eta = _ETA.search(line[found.end() :])
            eta_s = float(int(eta.group(1)) * 60 + int(eta.group(2))) if eta else None
            return int(found.group(2)), int(found.group(3)), eta_s
    return None, None, None
