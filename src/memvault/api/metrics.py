"""Prometheus metrics for `/metrics`, in a registry of the app's own (two apps in one process
never share counts). Nothing is sent anywhere: Prometheus scrapes, memvault never calls out.

Several worker processes (`memvault serve --workers N`): `serve` gives them one directory in
`PROMETHEUS_MULTIPROC_DIR` before they start, prometheus_client keeps each process's counts
in files there, and a scrape, whichever worker answers it, reads them all
(`MultiProcessCollector`): the counts are the server's, not one worker's.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from memvault.client import AsyncMemVault

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

RECENT_SEARCHES = 1_000  # search durations the console's dashboard summarises
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The app's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Set by `memvault serve` for its workers (module doc); read when prometheus_client
        # was imported, so the metrics below keep their counts in that directory.
        self.multiproc_dir = os.environ.get(MULTIPROC_ENV) or None
        self.requests = Counter(
            "memvault_http_requests",
            "HTTP requests by route template, method and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "memvault_http_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.search = Histogram(
            "memvault_search_duration_seconds",
            "Search latency inside the service, by mode",
            ["mode"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "memvault_errors",
            "Errors answered, by code (UNAVAILABLE and INTERNAL are storage or code faults)",
            ["code"],
            registry=self.registry,
        )

        # The vault's query-embedding cache counts as it goes; `_sync` adds what changed.
        self.query_hits = Counter(
            "memvault_query_cache_hits",
            "Query embeddings answered from the cache",
            registry=self.registry,
        )
        self.query_misses = Counter(
            "memvault_query_cache_misses",
            "Query embeddings computed by the model",
            registry=self.registry,
        )
        self.query_batches = Counter(
            "memvault_query_embed_batches",
            "Model calls for query embeddings (concurrent misses share one)",
            registry=self.registry,
        )
        self._vault: AsyncMemVault | None = None
        self._synced = (0, 0, 0)

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # The latest search durations (seconds), for the console's dashboard.
        self.recent_searches: deque[float] = deque(maxlen=RECENT_SEARCHES)

    def record_search(self, mode: str, elapsed_s: float) -> None:
        self.search.labels(mode).observe(elapsed_s)
        self.recent_searches.append(elapsed_s)

    def observe(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        """Count and time one request (label children cached: `labels()` cost about 2 us
        a call, two calls a request)."""
        key = (method, route, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(elapsed_s)
        self._sync()

    def watch(self, vault: AsyncMemVault) -> None:
        """Report the vault's query cache too (once it is open)."""
        self._vault = vault
        self._sync()

    def _sync(self) -> None:
        """Add the query cache's counts since the last call to their counters (in this
        worker's file when there are several)."""
        cache = None if self._vault is None else self._vault.query_cache
        if cache is None:
            return
        now = (cache.hits, cache.misses, cache.batches)
        if now == self._synced:
            return
        before, self._synced = self._synced, now
        for counter, new, old in zip(
            (self.query_hits, self.query_misses, self.query_batches), now, before, strict=True
        ):
            if new > old:
                counter.inc(new - old)

    def latest(self) -> bytes:
        """The text `/metrics` answers: this process's registry, or with several workers
        every worker's counts (collectors registered on `registry` by hand are left out
        there; the only one, the orchestrator's, runs with one worker)."""
        self._sync()
        if self.multiproc_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
