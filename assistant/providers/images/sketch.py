"""`sketch`: the local renderer of the `sketch-local` model, so the embedded default makes images offline.

It is not a diffusion model and never claims to be one: it draws a deterministic composition from the
prompt and seed (shapes and colours picked by their hash), and "denoises" towards it step by step. Each
step costs real CPU (a blur of the whole noise field at a falling radius), so progress, previews and
cancel behave as with a real model. A poll does the next step; a worker that died is followed by one
that starts the same render again from its stored request and draws the same image."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status
from runtime.settings import Settings

PREVIEW_SIDE = 64
PREVIEWS = 4  # previews per render, spread over its steps


@dataclass
class _Render:
    request: ImageRequest
    target: np.ndarray
    noise: Image.Image
    step: int = 0
    started: float = 0.0


_renders: dict[str, _Render] = {}
_lock = threading.Lock()


def available(settings: Settings) -> bool:
    """Always: numpy and Pillow are all it needs."""
    return True


def _rng(request: ImageRequest) -> np.random.Generator:
    digest = hashlib.sha256(f"{request.seed}\x00{request.prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def composition(request: ImageRequest) -> np.ndarray:
    """The image the render converges to: a gradient and shapes chosen by the prompt's and seed's hash."""
    rng = _rng(request)
    width, height = request.width, request.height
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    gradient = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)
    canvas = Image.fromarray(np.broadcast_to(gradient, (height, width, 3)).copy())
    draw = ImageDraw.Draw(canvas)
    for word in request.prompt.split()[:24] or ["empty"]:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(max(4, min(width, height) // 20), max(8, min(width, height) // 3)))
        shape = (x - size, y - size, x + size, y + size)
        if len(word) % 3 == 0:
            draw.ellipse(shape, fill=colour)
        elif len(word) % 3 == 1:
            draw.rectangle(shape, fill=colour)
        else:
            draw.line(shape, fill=colour, width=max(2, size // 6))
    return np.asarray(canvas, dtype=np.float32)


def _start(request: ImageRequest) -> _Render:
    rng = _rng(request)
    noise = rng.integers(0, 256, (request.height, request.width, 3), dtype=np.uint8)
    return _Render(request, composition(request), Image.fromarray(noise), started=time.monotonic())


def submit(request: ImageRequest, settings: Settings) -> Handle:
    """Accept the render; its work happens in the polls."""
    return Handle(provider="sketch", request_id=f"sketch-{uuid.uuid4().hex}", request=request.as_json())


def _frame(render: _Render) -> np.ndarray:
    total = render.request.steps
    progress = render.step / total
    # The real cost of a step: blurring the whole noise field (radius falls as the image appears).
    radius = 12.0 * (1.0 - progress) + 0.5
    blurred = np.asarray(render.noise.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    mixed: np.ndarray = render.target * progress + blurred * (1.0 - progress)
    return mixed


def png(pixels: np.ndarray) -> bytes:
    """An array of RGB pixels as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _preview(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=40)
    return out.getvalue()


def poll(handle: Handle, settings: Settings) -> Status:
    """Do the next step of the render (starting it if this process has not): running, then ready."""
    with _lock:
        render = _renders.get(handle.request_id)
        if render is None:
            render = _renders[handle.request_id] = _start(ImageRequest(**handle.request))
    render.step += 1
    total = render.request.steps
    pixels = _frame(render)
    if render.step >= total:
        with _lock:
            _renders.pop(handle.request_id, None)
        return Status(state="ready", step=total, total=total, result=png(render.target), next_poll_s=0)
    elapsed = time.monotonic() - render.started
    eta_s = round(elapsed / render.step * (total - render.step), 2)
    every = max(1, total // PREVIEWS)
    preview = _preview(pixels) if render.step % every == 0 or render.step == 1 else None
    return Status(state="running", step=render.step, total=total, eta_s=eta_s, preview=preview, next_poll_s=0)


def download(url: str, settings: Settings) -> bytes:
    """Nothing to download: a local render hands its bytes over in the last poll."""
    raise ImageProviderError("the local renderer has no result URLs", retryable=False)


def cancel(handle: Handle, settings: Settings) -> bool:
    """Drop the render: no further step runs and no final image is made."""
    with _lock:
        return _renders.pop(handle.request_id, None) is not None
