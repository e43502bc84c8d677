"""The Memory Orchestrator over real ZeroMQ sockets on 127.0.0.1: seed 004's client and
example, every action, keys and isolation, concurrency, compression, limits, idempotent
retries, CurveZMQ."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from memvault import FrozenClock, MemVault, Settings
from memvault.zmq import AsyncMemoryClient, MemoryClient
from memvault.zmq.protocol import encode_request
from tests.integration.zmq_helpers import Running, orchestrator


@pytest.fixture
def zsettings(settings: Settings) -> Settings:
    return settings.model_copy(update={"zmq_address": "tcp://127.0.0.1:0"})


@pytest.fixture
def keys(zsettings: Settings, clock: FrozenClock) -> dict[str, str]:
    with MemVault(zsettings, clock=clock) as v:
        return {
            "alice": v.create_api_key("alice")[1],
            "bob": v.create_api_key("bob")[1],
            "admin": v.create_api_key(admin=True)[1],
        }


@pytest.fixture
def server(zsettings: Settings, keys: dict[str, str]) -> Iterator[Running]:
    with orchestrator(zsettings) as running:
        yield running


def client(server: Running, who: str, keys: dict[str, str], **kw: Any) -> MemoryClient:
    return MemoryClient(server.address, api_key=keys[who], timeout_ms=10_000, **kw)


def test_seed_004_usage_example_verbatim(zsettings: Settings) -> None:
    open_settings = zsettings.model_copy(update={"auth_disabled": True})
    with orchestrator(open_settings) as running:
        client = MemoryClient(running.address)
        session_response = client.create_session(
            session_metadata={"device_info": "Windows PC", "location": "Home"}
        )
        memory_response = client.create_memory(
            memory_type="conversation",
            content={
                "text": "User asked about the weather",
                "source_agent": "language_understanding_agent",
            },
            tags=["weather", "query"],
        )
        memory_id = memory_response["data"]["memory_id"]
        get_response = client.get_memory(memory_id)
        search_response = client.search(
            query="weather", memory_types=["conversation"], tags=["weather"]
        )
        client.close()
    assert session_response["status"] == "success"
    assert memory_response["status"] == "success"
    assert memory_id.startswith("mem_")
    assert session_response["data"]["session_id"].startswith("ses_")
    data = get_response["data"]
    assert data["content"] == {
        "text": "User asked about the weather",
        "source_agent": "language_understanding_agent",
    }
    assert data["session_id"] == session_response["data"]["session_id"]
    assert [r["memory_id"] for r in search_response["data"]["results"]] == [memory_id]


def test_every_action(server: Running, keys: dict[str, str]) -> None:
    c = client(server, "alice", keys)
    s = c.create_session({"device": "phone"}, agent_id="voice")["data"]
    assert c.session_id == s["session_id"]
    assert c.get_session()["data"]["metadata"] == {"device": "phone"}
    assert c.update_session({"room": "kitchen"})["data"]["metadata"]["room"] == "kitchen"
    m = c.create_memory("fact", "Alice drinks oolong tea", ["drinks"], importance=0.8)["data"]
    mid = m["memory_id"]
    assert m["session_id"] == s["session_id"]
    assert c.get_memory(mid)["data"]["content"] == "Alice drinks oolong tea"
    r = c.update_memory(mid, content="Alice drinks green tea", expected_version=1)
    assert r["data"]["version"] == 2
    assert c.get_memory(mid)["data"]["content"] == "Alice drinks green tea"  # not stale
    r = c.update_memory(mid, importance=0.1, expected_version=1)
    assert r["error"]["code"] == "CONFLICT"
    other = c.create_memory("note", "Walks the dog at seven")["data"]["memory_id"]
    got = c.batch_read([mid, other, "mem_" + "0" * 26])["data"]
    assert [x["memory_id"] for x in got["memories"]] == [mid, other]
    assert got["missing"] == ["mem_" + "0" * 26]
    hits = c.search("what tea does she drink", k=5, explain=True)["data"]["results"]
    assert hits[0]["memory_id"] == mid
    assert "explain" in hits[0]
    page = c.list_memories(limit=1)["data"]
    assert len(page["memories"]) == 1
    assert page["next_cursor"]
    assert c.add_message("user", "hello there")["status"] == "success"
    assert c.add_message("assistant", "hi!")["status"] == "success"
    history = c.get_history()["data"]["messages"]
    assert [x["content"] for x in history] == ["hello there", "hi!"]
    assert history[0]["session_id"] == s["session_id"]
    ctx = c.get_context("what should I drink?", system_prompt="You are AURA.")["data"]
    assert ctx["messages"][0] == {"role": "system", "content": "You are AURA."}
    assert "green tea" in ctx["messages"][1]["content"]
    assert c.delete_memory(mid)["data"]["deleted"] is True
    assert c.get_memory(mid)["error"]["code"] == "NOT_FOUND"  # not served from the cache
    assert c.end_session()["data"]["status"] == "ended"
    assert c.session_id is None
    assert c.health()["data"]["status"] == "ok"
    assert c.stats()["error"]["code"] == "PERMISSION_DENIED"
    stats = client(server, "admin", keys).stats()["data"]
    assert stats["requests"]["get_memory"] >= 3
    assert stats["cache"]["hits"] + stats["cache"]["misses"] >= 3
    d = c.diagnostics()
    assert d["requests"] >= 20
    assert d["errors"] >= 3
    c.close()


def test_a_user_key_reaches_only_its_user(server: Running, keys: dict[str, str]) -> None:
    alice, bob = client(server, "alice", keys), client(server, "bob", keys)
    mid = bob.create_memory("note", "bob's secret")["data"]["memory_id"]
    assert alice.get_memory(mid)["error"]["code"] == "NOT_FOUND"
    assert alice.batch_read([mid])["data"] == {"memories": [], "missing": [mid]}
    assert alice.search("secret")["data"]["results"] == []
    assert alice.delete_memory(mid)["error"]["code"] == "NOT_FOUND"
    named = MemoryClient(server.address, api_key=keys["alice"], user_id="bob")
    assert named.get_memory(mid)["error"]["code"] == "PERMISSION_DENIED"
    admin = MemoryClient(server.address, api_key=keys["admin"], user_id="bob")
    assert admin.get_memory(mid)["data"]["content"] == "bob's secret"
    no_key = MemoryClient(server.address)
    assert no_key.get_memory(mid)["error"]["code"] == "UNAUTHENTICATED"
    wrong = MemoryClient(server.address, api_key="mvk_" + "x" * 43)
    assert wrong.health()["error"]["code"] == "UNAUTHENTICATED"
    for c in (alice, bob, named, admin, no_key, wrong):
        c.close()


def test_sixteen_concurrent_clients_and_every_write_is_visible(
    server: Running, keys: dict[str, str]
) -> None:
    made: list[str] = []
    lock = threading.Lock()
    failures: list[Any] = []

    def work(n: int) -> None:
        c = client(server, "alice" if n % 2 else "bob", keys)
        for i in range(15):
            r = c.create_memory("note", f"client {n} note {i} about the garden")
            if r["status"] != "success":
                failures.append(r)
                continue
            mid = r["data"]["memory_id"]
            with lock:
                made.append(mid)
            if c.get_memory(mid)["status"] != "success":
                failures.append(("get", mid))
            if i % 5 == 0:
                c.search(f"garden note {i}")
        c.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert len(made) == 240
    alice, bob = client(server, "alice", keys), client(server, "bob", keys)
    seen = {
        m["memory_id"]
        for c in (alice, bob)
        for m in c.list_memories(limit=1000)["data"]["memories"]
    }
    assert set(made) == seen


def test_large_contents_are_compressed_and_round_trip(
    server: Running, keys: dict[str, str]
) -> None:
    c = client(server, "alice", keys, compress_bytes=1024)
    text = "the quick brown fox jumps over the lazy dog " * 1200  # 52 KB
    mid = c.create_memory("note", text)["data"]["memory_id"]
    assert c.get_memory(mid)["data"]["content"] == text
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.connect(server.address)
    req = {"action": "get_memory", "api_key": keys["alice"], "payload": {"memory_id": mid}}
    raw.send(json.dumps(req).encode())  # seed 004's plain client: never a compressed reply
    assert raw.poll(10_000)
    frames = raw.recv_multipart()
    assert len(frames) == 1
    assert json.loads(frames[0])["data"]["content"] == text
    raw.close(0)


def test_an_oversize_message_gets_payload_too_large_and_the_server_goes_on(
    zsettings: Settings, keys: dict[str, str]
) -> None:
    small = zsettings.model_copy(update={"zmq_max_message_bytes": 4096})
    with orchestrator(small) as running:
        c = client(running, "alice", keys, compress_bytes=10**9)
        r = c.create_memory("note", "x" * 6000)
        assert r["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert c.create_memory("note", "fits")["status"] == "success"


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"not json"], "INVALID_ARGUMENT"),
        ([b"[1, 2]"], "INVALID_ARGUMENT"),
        ([b'{"payload": {}}'], "INVALID_ARGUMENT"),
        ([b'{"action": "launch_rockets"}'], "INVALID_ARGUMENT"),
        ([b'{"action": "get_memory", "v": 99}'], "INVALID_ARGUMENT"),
        ([b'{"action": "get_memory", "payload": []}'], "INVALID_ARGUMENT"),
        ([b"zlib", b"not zlib data"], "INVALID_ARGUMENT"),
        ([b"a", b"b", b"c"], "INVALID_ARGUMENT"),
        ([b'{"action": "health"}'], "UNAUTHENTICATED"),
        ([b"\xff\xfe"], "INVALID_ARGUMENT"),
    ],
)
def test_malformed_requests_get_an_error_reply(
    server: Running, keys: dict[str, str], frames: list[bytes], code: str
) -> None:
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.connect(server.address)
    raw.send_multipart(frames)
    assert raw.poll(10_000)
    reply = json.loads(raw.recv())
    assert reply["status"] == "error"
    assert reply["error"]["code"] == code
    raw.close(0)
    assert client(server, "alice", keys).health()["status"] == "success"


def test_a_missing_field_names_it(server: Running, keys: dict[str, str]) -> None:
    c = client(server, "alice", keys)
    r = c._call("get_memory", {})
    assert r["error"]["code"] == "INVALID_ARGUMENT"
    assert r["error"]["details"]["field"] == "memory_id"
    r = c._call("create_memory", {"content": "x", "bogus": 1})
    assert r["error"]["code"] == "INVALID_ARGUMENT"
    r = c._call("create_memory", {"memory_type": "note"})
    assert r["error"]["code"] == "INVALID_ARGUMENT"
    mid = c.create_memory("note", "kept")["data"]["memory_id"]
    r = c.update_memory(mid, bogus=1)  # an unknown field is refused, not silently dropped
    assert r["error"]["code"] == "INVALID_ARGUMENT"
    assert c.get_memory(mid)["data"]["content"] == "kept"


def test_an_idempotent_write_retried_is_written_once(server: Running, keys: dict[str, str]) -> None:
    c = client(server, "alice", keys)
    first = c.create_memory("note", "once only", idempotency_key="abc-1")
    again = c.create_memory("note", "once only", idempotency_key="abc-1")
    assert first["data"]["memory_id"] == again["data"]["memory_id"]
    assert len(c.list_memories()["data"]["memories"]) == 1


def test_a_vanished_client_leaves_the_server_serving(server: Running, keys: dict[str, str]) -> None:
    for _ in range(20):
        raw = zmq.Context.instance().socket(zmq.REQ)
        raw.connect(server.address)
        frames = encode_request("search", {"query": "anything"}, api_key=keys["alice"])
        raw.send_multipart(frames)
        raw.close(0)  # gone before the reply
    c = client(server, "alice", keys)
    assert c.health()["status"] == "success"
    deadline = time.monotonic() + 30
    while server.orchestrator.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.orchestrator.in_flight == 0  # their requests finished; nothing waits on them


async def test_async_client_twin(server: Running, keys: dict[str, str]) -> None:
    async with AsyncMemoryClient(server.address, api_key=keys["alice"]) as c:
        await c.create_session({"device": "car"})
        m = await c.create_memory("note", "parked on level 3", ["car"])
        mid = m["data"]["memory_id"]
        got = await c.get_memory(mid)
        assert got["data"]["session_id"] == c.session_id
        hits = await c.search("where did I park", tags=["car"])
        assert hits["data"]["results"][0]["memory_id"] == mid


def test_raise_errors_option(server: Running, keys: dict[str, str]) -> None:
    from memvault import NotFoundError

    c = client(server, "alice", keys, raise_errors=True)
    with pytest.raises(NotFoundError):
        c.get_memory("mem_" + "0" * 26)


def test_curve_encryption_and_a_wrong_key_is_refused(
    zsettings: Settings, keys: dict[str, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from memvault.cli.main import app

    good, bad = tmp_path / "keys", tmp_path / "other"
    for folder in (good, bad):
        result = CliRunner().invoke(app, ["orchestrator", "keygen", str(folder)])
        assert result.exit_code == 0, result.output
    secure = zsettings.model_copy(update={"zmq_curve_dir": str(good)})
    with orchestrator(secure) as running:
        ok = MemoryClient(running.address, api_key=keys["alice"], curve_dir=good)
        assert ok.health()["status"] == "success"
        plain = MemoryClient(running.address, api_key=keys["alice"], timeout_ms=500, retries=0)
        assert plain.health()["error"]["code"] == "UNAVAILABLE"
        # A client pair the server never authorized, even knowing the server's public key.
        (bad / "server.key").write_bytes((good / "server.key").read_bytes())
        wrong = MemoryClient(
            running.address, api_key=keys["alice"], curve_dir=bad, timeout_ms=500, retries=0
        )
        assert wrong.health()["error"]["code"] == "UNAVAILABLE"
        for c in (ok, plain, wrong):
            c.close()


def test_seed_004_module_names(server: Running, keys: dict[str, str]) -> None:
    from memvault.memory_client import MemoryClient as SeedClient

    assert SeedClient is MemoryClient
    c = SeedClient(server.address, api_key=keys["alice"])
    assert c.health()["status"] == "success"
    c.close()


def test_a_call_with_its_own_timeout(server: Running, keys: dict[str, str]) -> None:
    from tests.integration.rest_helpers import free_port

    c = client(server, "alice", keys)
    assert c.call("health", timeout_ms=5000)["status"] == "success"
    nobody = MemoryClient(f"tcp://127.0.0.1:{free_port()}", timeout_ms=60_000, retries=0)
    started = time.monotonic()
    r = nobody.call("get_memory", {"memory_id": "mem_" + "0" * 26}, timeout_ms=200)
    assert r["error"]["code"] == "UNAVAILABLE"
    assert r["error"]["details"]["timeout_ms"] == 200
    assert time.monotonic() - started < 5
    c.close()
    nobody.close()


def test_a_keys_rate_limit_applies_on_zeromq_too(
    server: Running, zsettings: Settings, clock: FrozenClock
) -> None:
    with MemVault(zsettings, clock=clock) as v:
        _, limited = v.create_api_key("carol", rate_per_minute=3)
    c = MemoryClient(server.address, api_key=limited)
    codes = [c.health().get("error", {}).get("code") for _ in range(4)]
    assert codes[:3] == [None, None, None]
    assert codes[3] == "RATE_LIMITED"
    assert c.health()["error"]["details"]["retry_after_s"] >= 1
    c.close()


def test_remember_and_summaries(server: Running, keys: dict[str, str]) -> None:
    c = client(server, "alice", keys)
    r = c.remember([{"role": "user", "content": "I live in Lisbon and I'm vegetarian."}], wait=True)
    assert r["status"] == "success", r
    assert r["data"]["jobs"]["done"] == 1
    assert c.get_summary()["data"] == {"summary": None}
    s = c.generate_summary()["data"]
    assert s["content"].startswith("Location: Lives in Lisbon.")
    assert c.get_summary()["data"]["summary"]["content"] == s["content"]
    assert c.add_message("user", "My name is Alice.", extract=True)["status"] == "success"
    jobs = c.remember([{"role": "user", "content": "I play chess."}])["data"]["jobs"]
    assert sum(jobs.values()) == 3  # the server's worker may have run them already
    for bad in ([], [{"role": "robot", "content": "x"}], "hello"):
        assert c.remember(bad)["error"]["code"] == "INVALID_ARGUMENT"  # type: ignore[arg-type]
    assert c.call("remember", {"messages": [], "wait": "yes"})["error"]["code"] == (
        "INVALID_ARGUMENT"
    )
    assert c.generate_summary(mode="poem")["error"]["code"] == "INVALID_ARGUMENT"
    bob = client(server, "bob", keys)
    assert bob.generate_summary()["error"]["code"] == "NOT_FOUND"
    c.close()
    bob.close()
