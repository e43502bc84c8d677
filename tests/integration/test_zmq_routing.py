"""How the orchestrator routes requests (SQLite, real sockets on 127.0.0.1): cache hits
answered by the receiving thread while every worker is stuck, requests waiting for a worker
in order, a full queue answering UNAVAILABLE, and a stop that finishes what is in flight.

A worker is made to wait the way it would in production: another process holds SQLite's
write lock, so a write through the orchestrator waits for it (up to `sqlite_busy_timeout_s`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.zmq import MemoryClient
from memvault.zmq import server as zserver
from memvault.zmq.server import Orchestrator
from tests.integration.zmq_helpers import orchestrator

BACKENDS = ("sqlite",)  # the receiving thread answers hits only where the check is local


@pytest.fixture
def zsettings(settings: Settings) -> Settings:
    return settings.model_copy(update={"zmq_address": "tcp://127.0.0.1:0", "zmq_workers": 1})


@pytest.fixture
def alice(zsettings: Settings, clock: FrozenClock) -> tuple[str, list[str]]:
    with MemVault(zsettings, clock=clock) as v:
        made = v.add_many("alice", [{"content": f"note {i}"} for i in range(3)])
        return v.create_api_key("alice")[1], [m.memory_id for m in made]


@contextmanager
def write_lock_held(settings: Settings) -> Iterator[None]:
    """Another connection (as another process would) holds the database's write lock."""
    path = settings.database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def stuck_write(address: str, key: str) -> tuple[threading.Thread, list[Any]]:
    """A write that waits in the only worker until the lock goes; returns when the worker
    has taken it (its in-flight count shows)."""
    c = MemoryClient(address, api_key=key, timeout_ms=60_000)
    return in_thread(lambda: c.create_memory(memory_type="note", content={"text": "late"}))


def wait_in_flight(orch: Orchestrator, n: int) -> None:
    for _ in range(2000):
        if orch.in_flight >= n:
            return
        threading.Event().wait(0.005)
    raise AssertionError("the write never reached a worker")


def test_a_cached_read_is_answered_while_the_only_worker_is_stuck(
    zsettings: Settings, alice: tuple[str, list[str]]
) -> None:
    key, ids = alice
    with orchestrator(zsettings) as running:
        c = MemoryClient(running.address, api_key=key, timeout_ms=30_000)
        first = c.get_memory(ids[0])  # loaded by the worker, now cached
        hits = running.orchestrator.ctx.cache.stats.hits
        with write_lock_held(zsettings):
            writer, written = stuck_write(running.address, key)
            wait_in_flight(running.orchestrator, 1)
            again = c.get_memory(ids[0])  # answered with the worker still waiting
            assert again["data"] == first["data"]
            assert running.orchestrator.ctx.cache.stats.hits == hits + 1
            assert writer.is_alive()
            assert not written
        writer.join(30)
        assert written[0]["status"] == "success", written
        c.close()


def test_requests_wait_for_a_worker_in_order_and_a_full_queue_answers_unavailable(
    zsettings: Settings, alice: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, ids = alice
    monkeypatch.setattr(zserver, "QUEUE_LIMIT", 1)
    with orchestrator(zsettings) as running:
        with write_lock_held(zsettings):
            writer, written = stuck_write(running.address, key)
            wait_in_flight(running.orchestrator, 1)
            queued_client = MemoryClient(running.address, api_key=key, timeout_ms=60_000)
            queued, listed = in_thread(lambda: queued_client.list_memories())
            # The queue holds one; the next request that needs a worker is refused at once.
            for _ in range(2000):
                refused = MemoryClient(running.address, api_key=key, timeout_ms=30_000)
                r = refused.list_memories()
                refused.close()
                if r["status"] == "error":
                    break
                threading.Event().wait(0.005)  # the queued request had not arrived yet
            assert r["error"]["code"] == "UNAVAILABLE"
            assert "busy" in r["error"]["message"]
            assert not written
            assert not listed
        writer.join(30)
        queued.join(30)
        assert written[0]["status"] == "success"
        # The queued list ran after the write, so it sees the new memory.
        texts = [m["content"] for m in listed[0]["data"]["memories"]]
        assert len(texts) == len(ids) + 1
        assert running.orchestrator.stats()["errors"]["UNAVAILABLE"] >= 1


def test_a_stop_finishes_the_request_in_flight_and_refuses_new_ones(
    zsettings: Settings, alice: tuple[str, list[str]]
) -> None:
    key, ids = alice
    orch = Orchestrator(zsettings)
    stop, up = threading.Event(), threading.Event()
    serving = threading.Thread(target=orch.serve_forever, args=(stop, up.set), daemon=True)
    serving.start()
    assert up.wait(60)
    assert orch.address is not None
    try:
        with write_lock_held(zsettings):
            writer, written = stuck_write(orch.address, key)
            wait_in_flight(orch, 1)
            stop.set()
            late = MemoryClient(orch.address, api_key=key, timeout_ms=30_000)
            r = late.list_memories()
            late.close()
            assert r["error"]["code"] == "UNAVAILABLE"
            assert "shutting down" in r["error"]["message"]
        writer.join(30)
        assert written[0]["status"] == "success", written
        serving.join(30)
        assert not serving.is_alive()
    finally:
        stop.set()
        serving.join(30)
        orch.close()
    with MemVault(zsettings) as v:
        assert len(v.list_memories("alice").items) == len(ids) + 1


def test_a_cached_memory_json_libraries_differ_on_is_served_and_serving_goes_on(
    zsettings: Settings, clock: FrozenClock
) -> None:
    # An integer past 64 bits in metadata: orjson refuses it, the reply encoder falls back.
    with MemVault(zsettings, clock=clock) as v:
        m = v.add("alice", "big number", metadata={"n": 2**70})
        key = v.create_api_key("alice")[1]
    with orchestrator(zsettings) as running:
        c = MemoryClient(running.address, api_key=key, timeout_ms=30_000)
        first = c.get_memory(m.memory_id)  # loaded by a worker
        hits = running.orchestrator.ctx.cache.stats.hits
        again = c.get_memory(m.memory_id)  # from the cache, on the receiving thread
        assert first["data"]["metadata"] == again["data"]["metadata"] == {"n": 2**70}
        assert running.orchestrator.ctx.cache.stats.hits == hits + 1
        assert c.health()["status"] == "success"
        c.close()
