"""`GET /v1/memories/{id}` answered by `api.fastpath` (before FastAPI's router) gives what
the FastAPI route gives, case by case: the same status, body, headers and error envelope
(only the request id and the memory's access count differ between two reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from memvault import AsyncMemVault, FrozenClock, Settings
from memvault.api import create_app

BACKENDS = ("sqlite",)  # the door's behaviour; storage is covered by the REST suite


@pytest.fixture
async def vault(settings: Settings, clock: FrozenClock) -> AsyncIterator[AsyncMemVault]:
    v = await AsyncMemVault.open(settings.model_copy(update={"rate_per_minute": 0}), clock=clock)
    yield v
    await v.close()


def _client(vault: AsyncMemVault, fast: bool) -> httpx.AsyncClient:
    app = create_app(vault=vault, fast_reads=fast)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _seen(r: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body: Any = r.json() if r.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
        for moving in ("access_count", "last_accessed_at"):
            body.pop(moving, None)
    assert int(r.headers["content-length"]) == len(r.content)
    headers = {
        k: v for k, v in r.headers.items() if k not in ("x-request-id", "date", "content-length")
    }
    return r.status_code, body, headers


async def test_the_fast_path_answers_as_the_route_does(vault: AsyncMemVault) -> None:
    alice = (await vault.create_api_key("alice"))[1]
    await vault.create_api_key("bob")
    admin = (await vault.create_api_key(admin=True))[1]
    slow_key = (await vault.create_api_key("alice", rate_per_minute=1))[1]
    m = await vault.add("alice", {"text": "tea", "kind": "drink"}, tags=["t"], metadata={"a": 1})
    gone = await vault.add("alice", "deleted one")
    await vault.delete("alice", gone.memory_id)
    b = await vault.add("bob", "bob's")
    bearer = lambda k: {"Authorization": f"Bearer {k}"}  # noqa: E731
    cases: list[tuple[str, dict[str, str]]] = [
        (f"/v1/memories/{m.memory_id}", bearer(alice)),
        (f"/v1/memories/{m.memory_id}", {"X-API-Key": alice}),
        (f"/v1/memories/{m.memory_id}?user_id=me", bearer(alice)),
        (f"/v1/memories/{m.memory_id}?user_id=bob", bearer(alice)),
        (f"/v1/memories/{m.memory_id}?user_id=alice", bearer(admin)),
        (f"/v1/memories/{m.memory_id}?user_id=bob&user_id=alice", bearer(admin)),
        (f"/v1/memories/{m.memory_id}", bearer(admin)),
        (f"/v1/memories/{b.memory_id}", bearer(alice)),
        (f"/v1/memories/{gone.memory_id}", bearer(alice)),
        ("/v1/memories/not-an-id", bearer(alice)),
        ("/v1/memories/mem_%00", bearer(alice)),
        (f"/v1/memories/{m.memory_id}", {}),
        (f"/v1/memories/{m.memory_id}", {"Authorization": "Basic abc"}),
        (f"/v1/memories/{m.memory_id}", bearer("mvk_wrong")),
        (f"/v1/memories/{m.memory_id}/", bearer(alice)),
    ]
    async with _client(vault, True) as fast, _client(vault, False) as route:
        for path, headers in cases:
            got = _seen(await fast.get(path, headers=headers))
            want = _seen(await route.get(path, headers=headers))
            assert got == want, path
        # A key over its rate: each app keeps its own budget; the refusals match.
        url = f"/v1/memories/{m.memory_id}"
        refused = []
        for c in (fast, route):
            assert (await c.get(url, headers=bearer(slow_key))).status_code == 200
            refused.append(await c.get(url, headers=bearer(slow_key)))
        assert _seen(refused[0]) == _seen(refused[1])
        assert refused[0].status_code == 429
        assert refused[0].headers["retry-after"]


async def test_fast_reads_are_counted_under_the_route(vault: AsyncMemVault) -> None:
    alice = (await vault.create_api_key("alice"))[1]
    m = await vault.add("alice", "tea")
    async with _client(vault, True) as fast:
        for _ in range(3):
            r = await fast.get(f"/v1/memories/{m.memory_id}", headers={"X-API-Key": alice})
            assert r.headers["etag"] == '"1"'
        await fast.get("/v1/memories/mem_nope", headers={"X-API-Key": alice})
        text = (await fast.get("/metrics")).text
    assert (
        'memvault_http_requests_total{code="200",method="GET",route="/v1/memories/{memory_id}"} 3.0'
        in text
    )
    assert 'memvault_errors_total{code="INVALID_ARGUMENT"} 1.0' in text or (
        'memvault_errors_total{code="NOT_FOUND"} 1.0' in text
    )
    got = await vault.get("alice", m.memory_id)
    assert got.access_count == 4  # three reads through the fast path, and this one


async def test_an_unexpected_error_is_the_internal_envelope_on_both_paths(
    vault: AsyncMemVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path sits outside FastAPI's error layer: it answers a failure as that layer
    answers one of the route (500, INTERNAL, the request id), and counts it."""
    alice = (await vault.create_api_key("alice"))[1]
    m = await vault.add("alice", "tea")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(vault, "get", broken)
    seen = []
    for fast in (True, False):
        async with _client(vault, fast) as client:
            r = await client.get(f"/v1/memories/{m.memory_id}", headers={"X-API-Key": alice})
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "INTERNAL"
            assert r.json()["request_id"] == r.headers["x-request-id"]
            assert "disk on fire" not in r.text
            metrics = (await client.get("/metrics")).text
            assert 'route="/v1/memories/{memory_id}"' in metrics
            assert 'code="500"' in metrics
            seen.append(_seen(r))
    assert seen[0] == seen[1]


def _seen_search(r: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """`_seen`, with each hit's access count and time left out, and the access part of its
    `explain` (every search counts one, which the next search ranks with)."""
    status, body, headers = _seen(r)
    if isinstance(body, dict):
        for hit in body.get("hits", []):
            for moving in ("access_count", "last_accessed_at"):
                hit["memory"].pop(moving, None)
            if isinstance(hit.get("explain"), dict):
                hit["explain"].pop("access", None)
    return status, body, headers


async def test_searches_are_answered_as_the_route_answers_them(
    settings: Settings, clock: FrozenClock
) -> None:
    """Searches the fast path takes (a JSON object the route's model accepts) and those it
    hands on (anything else) get the route's answer: status, body, headers, envelope."""
    # No access weight: the two paths' searches count accesses, which would move scores.
    update = {"rate_per_minute": 0, "search_weight_access": 0.0}
    vault = await AsyncMemVault.open(settings.model_copy(update=update), clock=clock)
    try:
        alice = (await vault.create_api_key("alice"))[1]
        await vault.create_api_key("bob")
        admin = (await vault.create_api_key(admin=True))[1]
        await vault.add("alice", "Drinks green tea every evening", tags=["drink"])
        await vault.add("alice", "Keeps bees in the garden", memory_type="fact")
        await vault.add("bob", "bob drinks tea too")
        key = lambda k: {"X-API-Key": k, "content-type": "application/json"}  # noqa: E731
        ok = '{"query": "tea in the evening", "k": 5}'
        cases: list[tuple[str, dict[str, str]]] = [
            (ok, key(alice)),
            (ok, {"Authorization": f"Bearer {alice}", "content-type": "application/json"}),
            (ok, {**key(alice), "content-type": "application/json; charset=utf-8"}),
            ('{"query": "tea", "mode": "lexical", "explain": true}', key(alice)),
            ('{"query": "bees", "mode": "vector", "k": 1}', key(alice)),
            ('{"query": "tea", "tags": ["drink"], "memory_types": ["note"]}', key(alice)),
            ('{"query": "tea", "filters": {"min_importance": 0.1}}', key(alice)),
            ('{"query": "tea", "user_id": "me"}', key(alice)),
            ('{"query": "tea", "user_id": "bob"}', key(alice)),  # another user
            ('{"query": "tea", "user_id": "alice"}', key(admin)),
            ('{"query": "tea"}', key(admin)),  # an admin names a user
            ('{"query": "tea"}', {"content-type": "application/json"}),  # no key
            ('{"query": "tea"}', key("mvk_wrong")),
            ('{"query": "   "}', key(alice)),  # the service's errors
            ('{"query": "tea", "k": 0}', key(alice)),
            ('{"query": "tea", "filters": {"colour": "red"}}', key(alice)),
            ('{"query": "tea\\u0000"}', key(alice)),
            ('{"query": "tea", "surprise": 1}', key(alice)),  # the route's own answers
            ('{"query": "tea", "mode": "psychic"}', key(alice)),
            ('{"k": 3}', key(alice)),
            ('["tea"]', key(alice)),
            ('{"query": ', key(alice)),
            ("", key(alice)),
            ('{"query": "tea"}', {**key(alice), "content-type": "text/plain"}),
            ('{"query": "tea"}', {"X-API-Key": alice}),  # no content type
            ('{"query": "tea"}', key("")),
        ]
        async with _client(vault, True) as fast, _client(vault, False) as route:
            for body, headers in cases:
                got = _seen_search(await fast.post("/v1/search", content=body, headers=headers))
                want = _seen_search(await route.post("/v1/search", content=body, headers=headers))
                assert got == want, body
            assert (await fast.post("/v1/search", content=ok, headers=key(alice))).json()["hits"]
            metrics = (await fast.get("/metrics")).text
        assert 'method="POST",route="/v1/search"' in metrics
        assert "memvault_search_duration_seconds_count" in metrics
    finally:
        await vault.close()


async def test_a_failing_search_is_the_internal_envelope_on_both_paths(
    vault: AsyncMemVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = (await vault.create_api_key("alice"))[1]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(vault, "search", broken)
    seen = []
    for fast in (True, False):
        async with _client(vault, fast) as client:
            r = await client.post(
                "/v1/search",
                json={"query": "tea"},
                headers={"X-API-Key": alice},
            )
            assert r.status_code == 500
            assert r.json()["error"]["code"] == "INTERNAL"
            assert "disk on fire" not in r.text
            assert 'route="/v1/search"' in (await client.get("/metrics")).text
            seen.append(_seen(r))
    assert seen[0] == seen[1]
