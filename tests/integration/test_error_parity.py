"""The same bad request through REST, ZeroMQ and the library gives the same error code."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from memvault import AsyncMemVault, FrozenClock, MemvaultError, Settings
from memvault.api import create_app
from memvault.zmq import AsyncMemoryClient
from tests.integration.zmq_helpers import orchestrator

UNKNOWN = "mem_" + "0" * 26

# (name, REST request, ZeroMQ action and payload, library call)
CASES: list[tuple[str, tuple[str, str, Any], tuple[str, dict[str, Any]], Callable[..., Any]]] = [
    (
        "importance out of range",
        ("POST", "/v1/memories", {"content": "x", "importance": 3}),
        ("create_memory", {"content": "x", "importance": 3}),
        lambda v: v.add("alice", "x", importance=3),
    ),
    (
        "content too long",
        ("POST", "/v1/memories", {"content": "x" * 70_000}),
        ("create_memory", {"content": "x" * 70_000}),
        lambda v: v.add("alice", "x" * 70_000),
    ),
    (
        "unknown memory",
        ("GET", f"/v1/memories/{UNKNOWN}", None),
        ("get_memory", {"memory_id": UNKNOWN}),
        lambda v: v.get("alice", UNKNOWN),
    ),
    (
        "malformed id",
        ("GET", "/v1/memories/mem_bad", None),
        ("get_memory", {"memory_id": "mem_bad"}),
        lambda v: v.get("alice", "mem_bad"),
    ),
    (
        "empty query",
        ("POST", "/v1/search", {"query": "  "}),
        ("search", {"query": "  "}),
        lambda v: v.search("alice", "  "),
    ),
    (
        "k out of range",
        ("POST", "/v1/search", {"query": "tea", "k": 0}),
        ("search", {"query": "tea", "k": 0}),
        lambda v: v.search("alice", "tea", k=0),
    ),
    (
        "another user",
        ("GET", "/v1/users/bob/summary", None),
        ("get_history", {"user_id": "bob"}),
        None,
    ),
]


@pytest.fixture
async def setup(
    settings: Settings, clock: FrozenClock
) -> AsyncIterator[tuple[AsyncMemVault, httpx.AsyncClient, AsyncMemoryClient]]:
    zs = settings.model_copy(update={"zmq_address": "tcp://127.0.0.1:0"})
    vault = await AsyncMemVault.open(zs, clock=clock)
    _, secret = await vault.create_api_key("alice")
    await vault.add("alice", "something")
    app = create_app(vault=vault)
    transport = httpx.ASGITransport(app=app)
    with orchestrator(zs) as running:
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://t", headers={"X-API-Key": secret}
            ) as rest,
            AsyncMemoryClient(running.address, api_key=secret) as zc,
        ):
            yield vault, rest, zc
    await vault.close()


@pytest.mark.parametrize(("name", "rest", "zmq", "lib"), CASES, ids=[c[0] for c in CASES])
async def test_the_same_bad_request_gets_the_same_code_on_every_door(
    setup: tuple[AsyncMemVault, httpx.AsyncClient, AsyncMemoryClient],
    name: str,
    rest: tuple[str, str, Any],
    zmq: tuple[str, dict[str, Any]],
    lib: Callable[..., Any] | None,
) -> None:
    vault, http, zc = setup
    method, path, body = rest
    r = await http.request(method, path, json=body)
    rest_code = r.json()["error"]["code"]
    z = await zc._call(*zmq)
    assert z["status"] == "error"
    assert z["error"]["code"] == rest_code, name
    if lib is not None:
        with pytest.raises(MemvaultError) as info:
            await lib(vault)
        assert info.value.code.value == rest_code, name


async def test_a_bad_field_is_described_alike_on_every_door(
    setup: tuple[AsyncMemVault, httpx.AsyncClient, AsyncMemoryClient],
) -> None:
    """`details.errors`: one item per bad field, `{"field", "message", "type"}`, whether
    the REST layer refused the body (422) or the service refused a value (400)."""
    vault, http, zc = setup
    shape = {"field", "message", "type"}
    by_schema = await http.post("/v1/memories", json={"content": "x", "importance": "high"})
    by_service = await http.post("/v1/search", json={"query": "tea", "filters": {"bogus": 1}})
    z = await zc._call("search", {"query": "tea", "filters": {"bogus": 1}})
    with pytest.raises(MemvaultError) as info:
        await vault.search("alice", "tea", filters={"bogus": 1})
    assert by_schema.status_code == 422
    answers = [by_schema.json()["error"], by_service.json()["error"], z["error"]]
    for error in [*answers, info.value.to_dict()]:
        assert error["code"] == "INVALID_ARGUMENT"
        items = error["details"]["errors"]
        assert items
        assert all(set(item) == shape for item in items), items
    assert any(i["field"].endswith("importance") for i in answers[0]["details"]["errors"])
    assert all(a["details"]["errors"][0]["field"] == "bogus" for a in answers[1:])


async def test_a_body_that_is_not_json_says_so_and_where(
    setup: tuple[AsyncMemVault, httpx.AsyncClient, AsyncMemoryClient],
) -> None:
    _, http, _ = setup
    json_type = {"content-type": "application/json"}
    for path in ("/v1/memories", "/v1/search"):
        broken = await http.post(path, content='{"content": "x",}', headers=json_type)
        empty = await http.post(path, content="", headers=json_type)
        assert broken.status_code == empty.status_code == 422
        error = broken.json()["error"]
        assert error["code"] == "INVALID_ARGUMENT"
        assert error["message"].startswith("body: not valid JSON (Expecting property name")
        assert error["message"].endswith("at character 16)")
        assert error["details"]["errors"][0]["field"] == "body"
        assert empty.json()["error"]["message"] == "body: required: a JSON document"
