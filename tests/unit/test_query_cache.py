"""The query cache batches concurrent misses: every caller gets its own vector, errors reach
every caller of the failed batch, and a lone caller never waits for others."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from memvault.embed import QueryCache


class SlowEmbedder:
    """Vectors that encode the text's number, after a delay: long enough for callers to pile
    up while a batch is embedded."""

    name = "slow"
    dimension = 4

    def __init__(self, delay_s: float = 0.05, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("embedder down")
        return np.array([[float(t.split()[-1]), 1.0, 0.0, 0.0] for t in texts], np.float32)


def test_concurrent_misses_share_batches_and_each_gets_its_vector() -> None:
    emb = SlowEmbedder()
    cache = QueryCache(emb)  # type: ignore[arg-type]
    texts = [f"query {i}" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        vectors = list(pool.map(cache.vector, texts))
    assert [int(v[0]) for v in vectors] == list(range(24))
    assert sum(len(c) for c in emb.calls) == 24
    assert len(emb.calls) < 24  # batched
    assert cache.misses == 24
    assert cache.vector("query 5")[0] == 5.0
    assert cache.hits == 1


def test_a_lone_caller_embeds_at_once() -> None:
    emb = SlowEmbedder(delay_s=0.0)
    cache = QueryCache(emb)  # type: ignore[arg-type]
    assert cache.vector("query 1")[0] == 1.0
    assert emb.calls == [["query 1"]]


def test_the_same_text_in_flight_is_embedded_once() -> None:
    emb = SlowEmbedder()
    cache = QueryCache(emb)  # type: ignore[arg-type]
    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(cache.vector, ["query 7"] * 8))
    assert all(v[0] == 7.0 for v in vectors)
    assert sum(c.count("query 7") for c in emb.calls) == 1


def test_an_embedder_error_reaches_every_waiter_and_the_cache_recovers() -> None:
    emb = SlowEmbedder(fail=True)
    cache = QueryCache(emb)  # type: ignore[arg-type]

    def attempt(text: str) -> str:
        try:
            cache.vector(text)
        except ConnectionError:
            return "failed"
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(attempt, [f"query {i}" for i in range(6)])) == {"failed"}
    emb.fail = False
    assert cache.vector("query 3")[0] == 3.0


def test_vectors_are_read_only() -> None:
    cache = QueryCache(SlowEmbedder(delay_s=0.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="read-only"):
        cache.vector("query 2")[0] = 9.0
