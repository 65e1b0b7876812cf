"""`langchain`: any LangChain chat model, named in the catalog by import path and keyword arguments.

A catalog entry's `options`: `class` (e.g. `langchain_anthropic.ChatAnthropic`), `kwargs` (plain
arguments such as `model`), and `secrets` (argument name -> setting name: `{api_key: ANTHROPIC_API_KEY}`),
read from the settings or the environment, never from the catalog file. The class is imported and
built on first use, once per process and entry; a missing package or a bad argument makes the model
unavailable, with the reason in the catalog listing and the log.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from assistant.providers import Chunk, ProviderError, Usage
from assistant.specs import ModelSpec
from assistant.transcript import Turn, token_estimate
from runtime.settings import Settings

log = logging.getLogger(__name__)
SAMPLING = ("temperature", "top_p")
# Arguments that carry credentials: refused in `kwargs`, so a key never sits in the catalog file.
SECRET_WORDS = ("key", "secret", "token", "password", "credential")
RETRYABLE_STATUS = (408, 409, 429)
RUNAWAY = 4  # times max_tokens (by our 4-bytes-a-token estimate) past which a reply is cut
RETRYABLE_NAMES = ("ratelimit", "timeout", "connection", "overloaded", "unavailable", "internalserver")
CHAT = "langchain_core.language_models.BaseChatModel"
BASES = {"chat": CHAT, "embedding": "langchain_core.embeddings.Embeddings"}
_built: dict[tuple[int, str, str], tuple[Any, str | None]] = {}
_lock = threading.Lock()


class BuildError(ValueError):
    """The entry's class can't be imported or built; the message is the reason shown to operators."""


def import_class(path: str) -> Any:
    """The class at `package.module.Name`; BuildError naming the package when it is not installed."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise BuildError(f"`class` must be an import path such as package.module.Name, not {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BuildError(f"{module_name} is not installed ({exc})") from exc
    found = getattr(module, name, None)
    if found is None:
        raise BuildError(f"{module_name} has no {name}")
    return found


def arguments(options: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The entry's keyword arguments with its secrets filled from the settings (or the environment)."""
    plain = dict(options.get("kwargs") or {})
    leaked = [name for name in plain if any(word in name.lower() for word in SECRET_WORDS)]
    if leaked:
        raise BuildError(f"{', '.join(leaked)} must come from `secrets` (a setting's name), not `kwargs`")
    for argument, setting in dict(options.get("secrets") or {}).items():
        value = getattr(settings, str(setting), None) or os.environ.get(str(setting))
        if not value:
            raise BuildError(f"setting {setting} (for {argument}) is not set")
        plain[str(argument)] = value
    return plain


def build(spec: ModelSpec, settings: Settings, *, base: str) -> Any:
    """This process's instance of the entry's class (a subclass of `base`, e.g. BaseChatModel); BuildError
    with the reason when it can't be made. Built once per process and entry version; failures too."""
    options = dict(spec.options)
    key = (os.getpid(), spec.id, json.dumps(options, sort_keys=True, default=str))
    with _lock:
        if key not in _built:
            _built[key] = _make(spec, options, settings, base)
        instance, reason = _built[key]
    if reason is not None:
        raise BuildError(reason)
    return instance


def _make(spec: ModelSpec, options: dict[str, Any], settings: Settings, base: str) -> tuple[Any, str | None]:
    try:
        cls = import_class(str(options.get("class") or ""))
        expected = import_class(base)
        if not (isinstance(cls, type) and issubclass(cls, expected)):
            raise BuildError(f"{options.get('class')} is not a {base.rpartition('.')[2]}")
        return cls(**arguments(options, settings)), None
    except BuildError as exc:
        reason = str(exc)
    except Exception as exc:  # a bad argument is whatever error the class raises
        reason = f"{options.get('class')} refused its arguments: {type(exc).__name__}: {exc}"[:500]
    log.warning("model %s is unavailable: %s", spec.id, reason)
    return None, reason


def unavailable_reason(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the model can't be used (None when it can)."""
    try:
        build(spec, settings, base=BASES.get(spec.kind, CHAT))
    except BuildError as exc:
        return str(exc)
    return None


def available(spec: ModelSpec, settings: Settings) -> bool:
    """The class imports and accepts its arguments (the upstream itself is not probed)."""
    return unavailable_reason(spec, settings) is None


def messages(turns: Sequence[Turn]) -> list[Any]:
    """Our turns as LangChain messages."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"assistant": AIMessage, "system": SystemMessage}
    return [kinds.get(turn["role"], HumanMessage)(content=turn["content"]) for turn in turns]


def image_message(text: str, image: bytes, mime: str) -> Any:
    """A user message with an image, in LangChain's standard content blocks (each integration turns it
    into its wire format). `image` are bytes the vision guard already fetched and checked."""
    from langchain_core.messages import HumanMessage

    encoded = base64.b64encode(image).decode()
    blocks = [{"type": "text", "text": text}, {"type": "image", "base64": encoded, "mime_type": mime}]
    return HumanMessage(content=blocks)  # type: ignore[arg-type]


def provider_error(exc: BaseException) -> ProviderError:
    """Any integration's exception as ours: rate limits, timeouts, 5xx and lost connections retry;
    bad requests and everything unknown don't (a retry would fail the same way)."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    names = " ".join(cls.__name__.lower() for cls in type(exc).__mro__)
    if isinstance(status, int):
        retryable = status >= 500 or status in RETRYABLE_STATUS
    else:
        retryable = isinstance(exc, TimeoutError | ConnectionError) or any(
            n in names for n in RETRYABLE_NAMES
        )
    return ProviderError(f"provider failed: {type(exc).__name__}: {str(exc)[:300]}", retryable=retryable)


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Stream the reply to `turns` through the model's `stream`."""
    yield from stream_messages(
        spec, messages(turns), max_tokens=max_tokens, settings=settings, options=options
    )


def stream_messages(
    spec: ModelSpec,
    prompt: list[Any],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Stream the reply to LangChain messages (text or multimodal); the last chunk carries the usage.

    Usage is the sum of the chunks' `usage_metadata` (Anthropic reports input and output in different
    chunks); a model that reports none is counted by our estimate, marked `counted_by: "estimate"`. The
    reply is cut at `max_tokens` here too, for a model that ignores the argument. Closing the generator
    (a cancel) closes the model's stream."""
    from langchain_core.messages.ai import add_usage

    try:
        model = build(spec, settings, base=CHAT)
    except BuildError as exc:
        raise ProviderError(f"model {spec.id} is unavailable: {exc}", retryable=False) from exc
    chosen = {k: v for k, v in {**_catalog_sampling(spec), **(options or {})}.items() if v is not None}
    call: dict[str, Any] = {k: chosen[k] for k in SAMPLING if k in chosen}
    if spec.options.get("max_tokens_argument", "max_tokens"):
        call[str(spec.options.get("max_tokens_argument", "max_tokens"))] = max_tokens
    reported: Any = None
    text: list[str] = []
    finish = "stop"
    upstream = model.stream(prompt, stop=list(chosen.get("stop") or []) or None, **call)
    try:
        for piece in upstream:
            reported = add_usage(reported, piece.usage_metadata) if piece.usage_metadata else reported
            delta = piece.text if isinstance(piece.text, str) else str(piece.text())
            finish = _finish(piece) or finish
            if delta:
                text.append(delta)
                yield Chunk(text=delta)
            if token_estimate("".join(text)) > RUNAWAY * max_tokens + 16:
                finish = "length"  # a model that ignores max_tokens: not streamed on for ever
                break
    except ProviderError:
        raise
    except Exception as exc:  # each integration raises its own errors
        raise provider_error(exc) from exc
    finally:
        close = getattr(upstream, "close", None)
        if close is not None:
            close()
    yield Chunk(usage=_usage(reported, prompt, "".join(text), max_tokens), finish_reason=finish)


def _catalog_sampling(spec: ModelSpec) -> dict[str, Any]:
    return {k: spec.options[k] for k in (*SAMPLING, "stop") if spec.options.get(k) is not None}


def _finish(piece: Any) -> str | None:
    metadata = getattr(piece, "response_metadata", None) or {}
    reason = metadata.get("finish_reason") or metadata.get("stop_reason")
    if reason in ("length", "max_tokens"):
        return "length"
    if reason == "content_filter":
        raise ProviderError("the provider refused the content", retryable=False)
    return "stop" if reason else None


def _usage(reported: Any, prompt: list[Any], reply: str, max_tokens: int) -> Usage:
    if reported and (reported.get("input_tokens") or reported.get("output_tokens")):
        return Usage(int(reported.get("input_tokens") or 0), int(reported.get("output_tokens") or 0))
    estimated_input = sum(token_estimate(str(message.content)) + 4 for message in prompt)
    # The model was asked for at most max_tokens: an estimate above it is not billed.
    return Usage(estimated_input, min(token_estimate(reply), max_tokens), counted_by="estimate")
