"""Prometheus metrics of an orchestrator, read at scrape time: requests and errors by
action and code, requests in flight, and the read cache's hits, misses, evictions,
expirations, invalidations, entries and bytes."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from memvault.zmq.server import Orchestrator


class OrchestratorCollector(Collector):
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.o = orchestrator

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily(
            "memvault_zmq_requests", "Orchestrator requests by action", labels=["action"]
        )
        for action, n in self.o.requests.items():
            requests.add_metric([action], n)
        yield requests
        errors = CounterMetricFamily(
            "memvault_zmq_errors", "Orchestrator error replies by code", labels=["code"]
        )
        for code, n in self.o.errors.items():
            errors.add_metric([code], n)
        yield errors
        yield GaugeMetricFamily(
            "memvault_zmq_in_flight", "Orchestrator requests being served", value=self.o.in_flight
        )
        cache = self.o.ctx.cache
        for name, value in cache.stats.as_dict().items():
            yield CounterMetricFamily(
                f"memvault_zmq_cache_{name}", f"Orchestrator read cache {name}", value=value
            )
        yield GaugeMetricFamily(
            "memvault_zmq_cache_entries", "Entries in the read cache", value=len(cache)
        )
        yield GaugeMetricFamily(
            "memvault_zmq_cache_bytes", "Bytes held by the read cache", value=cache.size_bytes
        )
