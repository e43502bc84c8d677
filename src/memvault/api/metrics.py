"""Prometheus metrics for `/metrics`, in a registry of the app's own (two apps in one process
never share counts). Nothing is sent anywhere: Prometheus scrapes, memvault never calls out.

With several uvicorn workers each process counts its own requests; a scrape reaches one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from memvault.client import AsyncMemVault

RECENT_SEARCHES = 1_000  # search durations the console's dashboard summarises
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _VaultCollector(Collector):
    """Read at scrape time: the query-embedding cache and what the vault holds in memory."""

    def __init__(self, vault: AsyncMemVault) -> None:
        self.vault = vault

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cache = self.vault.query_cache
        hits = CounterMetricFamily(
            "memvault_query_cache_hits", "Query embeddings answered from the cache"
        )
        misses = CounterMetricFamily(
            "memvault_query_cache_misses", "Query embeddings computed by the model"
        )
        batches = CounterMetricFamily(
            "memvault_query_embed_batches",
            "Model calls for query embeddings (concurrent misses share one)",
        )
        hits.add_metric([], 0 if cache is None else cache.hits)
        misses.add_metric([], 0 if cache is None else cache.misses)
        batches.add_metric([], 0 if cache is None else cache.batches)
        yield hits
        yield misses
        yield batches


class Metrics:
    """The app's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def watch(self, vault: AsyncMemVault) -> None:
        """Report the vault's caches too (once it is open)."""
        self.registry.register(_VaultCollector(vault))
