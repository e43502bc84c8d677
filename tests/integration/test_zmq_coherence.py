"""The orchestrator's read cache never serves what changed through another door: the
library, the REST app, another orchestrator process on the same database. Also: garbage
input (hypothesis) never stops the server, and a client survives a server restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zmq
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from memvault import AsyncMemVault, FrozenClock, MemVault, Settings
from memvault.api import create_app
from memvault.zmq import MemoryClient
from tests.integration.rest_helpers import free_port
from tests.integration.zmq_helpers import Running, orchestrator


@pytest.fixture
def zsettings(settings: Settings) -> Settings:
    return settings.model_copy(update={"zmq_address": "tcp://127.0.0.1:0"})


@pytest.fixture
def key(zsettings: Settings, clock: FrozenClock) -> str:
    with MemVault(zsettings, clock=clock) as v:
        return v.create_api_key("alice")[1]


@pytest.fixture
def server(zsettings: Settings, key: str) -> Iterator[Running]:
    with orchestrator(zsettings) as running:
        yield running


def _cached(c: MemoryClient, mid: str) -> str:
    """Read twice so the second read comes from the cache when nothing changed."""
    c.get_memory(mid)
    return str(c.get_memory(mid)["data"]["content"])


def test_a_change_through_the_library_is_never_served_stale(
    server: Running, key: str, zsettings: Settings
) -> None:
    c = MemoryClient(server.address, api_key=key)
    mid = c.create_memory("note", "version one")["data"]["memory_id"]
    assert _cached(c, mid) == "version one"
    hits_before = server.orchestrator.ctx.cache.stats.hits
    with MemVault(zsettings) as lib:  # another connection, as another process would be
        lib.update("alice", mid, content="version two")
        assert c.get_memory(mid)["data"]["content"] == "version two"
        lib.delete("alice", mid)
        assert c.get_memory(mid)["error"]["code"] == "NOT_FOUND"
        lib.restore("alice", mid)
        assert c.get_memory(mid)["data"]["content"] == "version two"
    assert server.orchestrator.ctx.cache.stats.hits == hits_before  # every read after a change
    assert _cached(c, mid) == "version two"  # and once nothing changes, the cache serves again
    assert server.orchestrator.ctx.cache.stats.hits > hits_before
    c.close()


def test_searches_see_new_memories_written_elsewhere(
    server: Running, key: str, zsettings: Settings
) -> None:
    c = MemoryClient(server.address, api_key=key)
    c.create_memory("note", "The spare key is under the blue flowerpot")
    first = c.search("where is the spare key")["data"]["results"]
    assert len(first) == 1
    with MemVault(zsettings) as lib:
        lib.add("alice", "The spare key moved to the neighbour's mailbox")
    again = c.search("where is the spare key")["data"]["results"]
    assert len(again) == 2
    c.close()


async def test_a_change_through_rest_is_never_served_stale(
    server: Running, key: str, zsettings: Settings
) -> None:
    c = MemoryClient(server.address, api_key=key)
    mid = c.create_memory("note", "draft")["data"]["memory_id"]
    batch = c.batch_read([mid])["data"]["memories"]
    assert batch[0]["content"] == "draft"
    assert _cached(c, mid) == "draft"
    async with await AsyncMemVault.open(zsettings) as vault:
        app = create_app(vault=vault)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as rest:
            r = await rest.patch(
                f"/v1/memories/{mid}", json={"content": "final"}, headers={"X-API-Key": key}
            )
            assert r.status_code == 200
    assert c.get_memory(mid)["data"]["content"] == "final"
    assert c.batch_read([mid])["data"]["memories"][0]["content"] == "final"
    c.close()


def test_erasing_a_user_empties_its_cache(server: Running, key: str, zsettings: Settings) -> None:
    c = MemoryClient(server.address, api_key=key)
    mid = c.create_memory("note", "to be erased")["data"]["memory_id"]
    assert _cached(c, mid) == "to be erased"
    with MemVault(zsettings) as lib:
        lib.erase_user("alice")
        _, new_key = lib.create_api_key("alice")
    c2 = MemoryClient(server.address, api_key=new_key)
    assert c2.get_memory(mid)["error"]["code"] == "NOT_FOUND"
    c.close()
    c2.close()


def _orchestrator_process(
    settings: Settings, port: int, metrics_port: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEMVAULT_ZMQ_METRICS_PORT": str(metrics_port),
        "MEMVAULT_DATABASE_URL": settings.database_url,
        "MEMVAULT_DATA_DIR": str(settings.data_dir),
        "MEMVAULT_ZMQ_ADDRESS": f"tcp://127.0.0.1:{port}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "memvault", "orchestrator"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(c: MemoryClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if c.health()["status"] == "success":
            return
    raise AssertionError("the orchestrator did not answer")


@pytest.mark.slow
def test_a_second_orchestrator_process_and_a_restart(
    server: Running, key: str, zsettings: Settings
) -> None:
    port, metrics_port = free_port(), free_port()
    proc = _orchestrator_process(zsettings, port, metrics_port)
    try:
        other = MemoryClient(f"tcp://127.0.0.1:{port}", api_key=key, timeout_ms=2000)
        _wait(other)
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'memvault_zmq_requests_total{action="health"}' in scraped
        assert "memvault_zmq_cache_hits_total" in scraped
        here = MemoryClient(server.address, api_key=key)
        mid = here.create_memory("note", "from the first")["data"]["memory_id"]
        assert _cached(here, mid) == "from the first"
        assert _cached(other, mid) == "from the first"
        other.update_memory(mid, content="from the second")
        assert here.get_memory(mid)["data"]["content"] == "from the second"
        here.update_memory(mid, content="back to the first")
        assert other.get_memory(mid)["data"]["content"] == "back to the first"
        # Stop the second process: reads time out, the client rebuilds its socket and
        # retries; once it is back, the same client goes on.
        proc.terminate()
        proc.wait(30)
        slow = MemoryClient(f"tcp://127.0.0.1:{port}", api_key=key, timeout_ms=300, retries=2)
        r = slow.get_memory(mid)
        assert r["error"]["code"] == "UNAVAILABLE"
        assert slow.diagnostics()["timeouts"] == 3
        w = slow.create_memory("note", "no retry without a key")
        assert w["error"]["code"] == "UNAVAILABLE"
        assert slow.diagnostics()["timeouts"] == 4  # a write is tried once
        assert proc.stderr is not None
        proc.stderr.close()
        proc = _orchestrator_process(zsettings, port)
        slow.timeout_ms = 2000
        _wait(slow)
        assert slow.get_memory(mid)["data"]["content"] == "back to the first"
        for c in (other, here, slow):
            c.close()
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()


frame = st.binary(max_size=300) | st.text(max_size=200).map(str.encode)
json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
actions = st.sampled_from(
    [
        "get_memory",
        "create_memory",
        "search",
        "batch_read",
        "update_memory",
        "add_message",
        "create_session",
        "get_context",
        "list_memories",
        "nope",
        "",
    ]
)


@hsettings(
    max_examples=60,
    deadline=None,
    derandomize=os.environ.get("MEMVAULT_FUZZ_EXPLORE") != "1",
    suppress_health_check=list(HealthCheck),
)
@given(
    frames=st.lists(frame, min_size=1, max_size=3)
    | st.builds(
        lambda a, p: [__import__("json").dumps({"action": a, "payload": p}, default=str).encode()],
        actions,
        json_ish,
    )
)
def test_garbage_never_stops_the_server(frames: list[bytes]) -> None:
    raw = _CTX.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(_SERVER["address"])
    raw.send_multipart(frames)
    assert raw.poll(10_000), frames
    reply = raw.recv_multipart()
    raw.close(0)
    assert reply
    ok = _SERVER["client"].health()  # type: ignore[attr-defined]
    assert ok["status"] == "success"


_CTX = zmq.Context.instance()
_SERVER: dict[str, object] = {}


@pytest.fixture(autouse=True)
def _garbage_target(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.name != "test_garbage_never_stops_the_server":
        yield
        return
    base: Path = request.getfixturevalue("tmp_path")
    s = Settings(
        data_dir=base,
        database_url=f"sqlite:///{base / 'fuzz.db'}",
        zmq_address="tcp://127.0.0.1:0",
        auth_disabled=True,
        embedder="none",
    )
    with orchestrator(s) as running:
        _SERVER["address"] = running.address
        _SERVER["client"] = MemoryClient(running.address)
        yield
        _SERVER["client"].close()  # type: ignore[attr-defined]
