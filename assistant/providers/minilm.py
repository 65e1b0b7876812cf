"""`minilm`: the local all-MiniLM-L6-v2 sentence embeddings (assistant/embeddings.py), kind `embedding`."""

from __future__ import annotations

from assistant.embeddings import WEIGHTS_PACKAGE
from assistant.embeddings import available as installed
from assistant.specs import ModelSpec
from runtime.settings import Settings


def available(spec: ModelSpec, settings: Settings) -> bool:
    """The weights package and its readers are installed."""
    return installed()


def unavailable_reason(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the model can't be used (None when it can)."""
    return None if installed() else f"{WEIGHTS_PACKAGE}, tokenizers or safetensors is not installed"
