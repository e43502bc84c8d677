"""The REST door: every route, seed 003's exact answers, auth, errors, limits; in process
through the ASGI transport (the transport does not matter here; `test_rest_server.py` goes
over a real socket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from memvault import AsyncMemVault, FrozenClock, Settings
from memvault.api import create_app
from tests.integration.rest_helpers import Keys


@pytest.fixture
async def vault(settings: Settings, clock: FrozenClock) -> AsyncIterator[AsyncMemVault]:
    v = await AsyncMemVault.open(settings, clock=clock)
    yield v
    await v.close()


@pytest.fixture
async def keys(vault: AsyncMemVault) -> Keys:
    secrets = []
    for who in ("alice", "bob"):
        secrets.append((await vault.create_api_key(who))[1])
    secrets.append((await vault.create_api_key(admin=True))[1])
    return Keys(*secrets)


@pytest.fixture
async def client(vault: AsyncMemVault) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(vault=vault)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def error(r: httpx.Response) -> str:
    body = r.json()
    assert body["status"] == "error"
    assert body["request_id"] == r.headers["x-request-id"]
    return str(body["error"]["code"])


# ----------------------------------------------------------------------------- seed 003
async def test_seed_003_routes_answer_byte_for_byte(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("admin")
    r = await client.get("/api/v1/memory/42", headers=h)
    assert r.status_code == 200
    assert r.content == b'{"status":"ok","memory":null}'
    r = await client.post("/api/v1/memory", json={"user_id": 42, "content": "Likes tea"}, headers=h)
    assert r.status_code == 200
    assert r.content == b'{"status":"ok","message":"Memory saved successfully"}'
    r = await client.get("/api/v1/memory/42", headers=h)
    body = r.json()
    assert list(body) == ["status", "memory"]
    assert body["status"] == "ok"
    assert list(body["memory"]) == ["content", "created_at", "updated_at"]
    assert body["memory"]["content"] == "Likes tea"
    created = body["memory"]["created_at"]
    await client.post(
        "/api/v1/memory", json={"user_id": "42", "content": "Likes oolong"}, headers=h
    )
    again = (await client.get("/api/v1/memory/42", headers=h)).json()["memory"]
    assert again["content"] == "Likes oolong"
    assert again["created_at"] == created


async def test_seed_003_summary_is_the_users_summary(client: httpx.AsyncClient, keys: Keys) -> None:
    await client.post(
        "/api/v1/memory", json={"user_id": "alice", "content": "A."}, headers=keys.h("alice")
    )
    r = await client.get("/v1/users/me/summary", headers=keys.h("alice"))
    assert r.json()["content"] == "A."


# ----------------------------------------------------------------------------- memories
async def test_memory_lifecycle(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    r = await client.post(
        "/v1/memories", json={"content": "Prefers green tea", "tags": ["drinks"]}, headers=h
    )
    assert r.status_code == 201
    assert r.headers["etag"] == '"1"'
    mid = r.json()["memory_id"]
    assert r.json()["user_id"] == "alice"
    r = await client.get(f"/v1/memories/{mid}", headers=h)
    assert r.status_code == 200
    assert r.json()["content"] == "Prefers green tea"
    r = await client.patch(
        f"/v1/memories/{mid}", json={"content": "Prefers oolong"}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'
    r = await client.patch(
        f"/v1/memories/{mid}", json={"importance": 0.9}, headers={**h, "If-Match": '"1"'}
    )
    assert r.status_code == 409
    assert error(r) == "CONFLICT"
    assert r.json()["error"]["details"]["current_version"] == 2
    r = await client.get(f"/v1/memories/{mid}/history", headers=h)
    assert [e["operation"] for e in r.json()] == ["create", "update"]
    r = await client.post(f"/v1/memories/{mid}/revert", json={"version": 1}, headers=h)
    assert r.json()["content"] == "Prefers green tea"
    assert r.json()["version"] == 3
    r = await client.delete(f"/v1/memories/{mid}", headers=h)
    assert r.status_code == 200
    assert r.json()["deleted_at"] is not None
    r = await client.get(f"/v1/memories/{mid}", headers=h)
    assert r.status_code == 404
    assert error(r) == "NOT_FOUND"
    r = await client.post(f"/v1/memories/{mid}/restore", headers=h)
    assert r.status_code == 200
    assert r.json()["deleted_at"] is None


async def test_batch_create_get_list_and_upsert(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    items = [{"content": f"fact {i}", "tags": ["t"] if i % 2 else []} for i in range(5)]
    r = await client.post("/v1/memories/batch", json={"items": items}, headers=h)
    assert r.status_code == 201
    ids = [m["memory_id"] for m in r.json()["items"]]
    r = await client.post(
        "/v1/memories/batch-get",
        json={"memory_ids": [ids[3], "mem_" + "0" * 26, ids[0]]},
        headers=h,
    )
    assert [m["memory_id"] for m in r.json()["items"]] == [ids[3], ids[0]]
    r = await client.get("/v1/memories", params={"limit": 2, "tag": "t"}, headers=h)
    page = r.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None
    r = await client.get("/v1/memories", params={"limit": 3, "order": "created_asc"}, headers=h)
    first = r.json()
    r = await client.get(
        "/v1/memories",
        params={"limit": 3, "order": "created_asc", "cursor": first["next_cursor"]},
        headers=h,
    )
    seen = [m["content"] for m in first["items"] + r.json()["items"]]
    assert seen == [f"fact {i}" for i in range(5)]
    r = await client.put("/v1/memories/by-key/prefs/tea", json={"content": "green"}, headers=h)
    assert r.status_code == 200
    assert r.json()["version"] == 1
    r = await client.put("/v1/memories/by-key/prefs/tea", json={"content": "oolong"}, headers=h)
    assert r.json()["version"] == 2
    assert r.json()["key"] == "tea"


async def test_a_batch_is_all_or_nothing(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    items = [{"content": "ok"}, {"content": "bad", "importance": 3}]
    r = await client.post("/v1/memories/batch", json={"items": items}, headers=h)
    assert r.status_code == 400
    assert error(r) == "INVALID_ARGUMENT"
    assert r.json()["error"]["details"]["index"] == 1
    assert (await client.get("/v1/memories", headers=h)).status_code == 404  # no user made


async def test_search_with_explain(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    await client.post("/v1/memories", json={"content": "Drinks oolong tea at night"}, headers=h)
    await client.post("/v1/memories", json={"content": "Walks the dog at 7"}, headers=h)
    r = await client.post(
        "/v1/search", json={"query": "what tea does she drink?", "explain": True}, headers=h
    )
    hits = r.json()["hits"]
    assert hits[0]["memory"]["content"] == "Drinks oolong tea at night"
    assert {"lexical", "vector", "importance"} <= set(hits[0]["explain"])
    r = await client.post("/v1/search", json={"query": "   "}, headers=h)
    assert r.status_code == 400
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post("/v1/search", json={"query": "tea", "k": 500}, headers=h)
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post("/v1/search", json={"query": "tea", "filters": {"nope": 1}}, headers=h)
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/search", json={"query": 'tea" NEAR * -', "mode": "lexical"}, headers=h
    )
    assert r.status_code == 200


# ----------------------------------------------------------------------------- people
async def test_user_records(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    r = await client.put(
        "/v1/users/alice", json={"username": "Alice", "timezone": "Europe/Lisbon"}, headers=h
    )
    assert r.json()["username"] == "Alice"
    r = await client.put("/v1/users/me", json={"profile": {"lang": "pt"}}, headers=h)
    assert r.json()["profile"] == {"lang": "pt"}
    assert r.json()["username"] == "Alice"
    assert (await client.get("/v1/users/me", headers=h)).json()["timezone"] == "Europe/Lisbon"
    s = (await client.post("/v1/users/me/sessions", json={"agent_id": "bot"}, headers=h)).json()
    sid = s["session_id"]
    r = await client.post(
        "/v1/users/me/messages",
        json={"role": "user", "content": "hello", "session_id": sid},
        headers=h,
    )
    assert r.status_code == 201
    await client.post(
        "/v1/users/me/messages", json={"role": "assistant", "content": "hi"}, headers=h
    )
    msgs = (await client.get("/v1/users/me/messages", headers=h)).json()
    assert [m["content"] for m in msgs] == ["hello", "hi"]
    r = await client.get("/v1/users/me/messages", params={"session_id": sid}, headers=h)
    assert [m["content"] for m in r.json()] == ["hello"]
    r = await client.patch(f"/v1/users/me/sessions/{sid}", json={"metadata": {"a": 1}}, headers=h)
    assert r.json()["metadata"] == {"a": 1}
    assert (await client.get(f"/v1/users/me/sessions/{sid}", headers=h)).json()[
        "status"
    ] == "active"
    r = await client.post(f"/v1/users/me/sessions/{sid}/end", headers=h)
    assert r.json()["status"] == "ended"
    r = await client.get("/v1/users/me/sessions", params={"status": "ended"}, headers=h)
    assert [x["session_id"] for x in r.json()] == [sid]
    r = await client.post(
        "/v1/users/me/facts", json={"content": "Lives in Lisbon", "category": "location"}, headers=h
    )
    assert r.status_code == 201
    assert r.json()["memory_type"] == "fact"
    r = await client.get("/v1/users/me/facts", params={"category": "location"}, headers=h)
    assert [f["content"] for f in r.json()] == ["Lives in Lisbon"]
    r = await client.post("/v1/users/me/permanent", json={"content": "Name: Alice"}, headers=h)
    assert r.json()["memory_type"] == "permanent"
    assert len((await client.get("/v1/users/me/permanent", headers=h)).json()) == 1
    r = await client.put("/v1/users/me/summary", json={"content": "Alice, Lisbon"}, headers=h)
    assert r.json()["content"] == "Alice, Lisbon"
    r = await client.post("/v1/users/me/metrics/logins/increment", json={"by": 2}, headers=h)
    assert r.json()["counters"] == {"logins": 2}
    r = await client.post("/v1/users/me/streak", json={"today": "2026-03-01"}, headers=h)
    assert r.json()["current_streak"] >= 1
    m = (await client.get("/v1/users/me/metrics", headers=h)).json()
    assert m["total_messages"] == 2
    assert m["messages_by_role"] == {"user": 1, "assistant": 1}
    r = await client.delete("/v1/users/me/messages", headers=h)
    assert r.json() == {"deleted": 2}


async def test_export_as_json_and_jsonl(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    await client.post("/v1/memories", json={"content": "likes tea"}, headers=h)
    await client.post("/v1/users/me/messages", json={"role": "user", "content": "hi"}, headers=h)
    doc = (await client.get("/v1/users/me/export", headers=h)).json()
    assert doc["format"] == "memvault-export"
    assert doc["user"]["user_id"] == "alice"
    assert [m["content"] for m in doc["memories"]] == ["likes tea"]
    assert [m["content"] for m in doc["messages"]] == ["hi"]
    r = await client.get("/v1/users/me/export", params={"format": "jsonl"}, headers=h)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["kind"] for x in lines][:3] == ["header", "user", "memory"]
    r = await client.get("/v1/users/nobody/export", headers=keys.h("admin"))
    assert r.status_code == 404
    assert error(r) == "NOT_FOUND"


async def test_erase_is_audited(client: httpx.AsyncClient, keys: Keys) -> None:
    await client.post("/v1/memories", json={"content": "x"}, headers=keys.h("bob"))
    r = await client.delete("/v1/users/bob", headers=keys.h("admin"))
    assert r.json()["memories"] == 1
    assert r.json()["api_keys"] == 1
    r = await client.get("/v1/memories", headers=keys.h("bob"))
    assert r.status_code == 401  # its key went with it
    audit = await client.get("/v1/audit", params={"user_id": "bob"}, headers=keys.h("admin"))
    assert [e["action"] for e in audit.json()][-1] == "user.erase"


async def test_context_route(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    await client.put("/v1/users/me/summary", json={"content": "Alice likes tea."}, headers=h)
    await client.post("/v1/memories", json={"content": "Allergic to peanuts"}, headers=h)
    r = await client.post(
        "/v1/context",
        json={"message": "any peanut snacks?", "system_prompt": "You are AURA."},
        headers=h,
    )
    msgs = r.json()["messages"]
    assert msgs[0] == {"role": "system", "content": "You are AURA."}
    assert msgs[1]["content"].startswith("User Memory: Alice likes tea.")
    assert "Allergic to peanuts" in msgs[1]["content"]
    assert msgs[-1] == {"role": "user", "content": "any peanut snacks?"}


async def test_admin_routes(client: httpx.AsyncClient, keys: Keys) -> None:
    a = keys.h("admin")
    r = await client.put("/v1/global-context/motd", json={"value": {"text": "hi"}}, headers=a)
    assert r.json()["value"] == {"text": "hi"}
    r = await client.get("/v1/global-context", headers=keys.h("alice"))
    assert r.json() == {"motd": {"text": "hi"}}
    r = await client.put("/v1/global-context/motd", json={"value": 1}, headers=keys.h("alice"))
    assert r.status_code == 403
    assert error(r) == "PERMISSION_DENIED"
    assert (await client.delete("/v1/global-context/motd", headers=a)).status_code == 204
    r = await client.delete("/v1/global-context/motd", headers=a)
    assert error(r) == "NOT_FOUND"
    r = await client.post("/v1/keys", json={"user_id": "carol", "name": "ci"}, headers=a)
    created = r.json()
    assert r.status_code == 201
    assert created["secret"].startswith("mvk_")
    carol = {"X-API-Key": created["secret"]}
    assert (
        await client.post("/v1/memories", json={"content": "c"}, headers=carol)
    ).status_code == 201
    listed = (await client.get("/v1/keys", headers=carol)).json()
    assert [k["key_id"] for k in listed] == [created["key"]["key_id"]]
    assert "secret" not in listed[0]
    r = await client.delete(f"/v1/keys/{created['key']['key_id']}", headers=carol)
    assert r.json()["revoked_at"] is not None
    assert (await client.get("/v1/memories", headers=carol)).status_code == 401
    r = await client.post("/v1/admin/purge", headers=a)
    assert r.json() == {"expired": 0, "deleted": 0}
    assert (await client.get("/v1/users", headers=a)).status_code == 200
    r = await client.post("/v1/keys", json={"admin": True}, headers=keys.h("alice"))
    assert error(r) == "PERMISSION_DENIED"


# ----------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer mvk_" + "x" * 43},
        {"X-API-Key": "wrong"},
    ],
)
async def test_requests_without_a_valid_key_are_unauthenticated(
    client: httpx.AsyncClient, keys: Keys, headers: dict[str, str]
) -> None:
    r = await client.get("/v1/memories", headers=headers)
    assert r.status_code == 401
    assert error(r) == "UNAUTHENTICATED"


async def test_health_and_docs_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "memvault"
    assert (await client.get("/docs")).status_code == 200


async def test_an_admin_key_must_name_the_user(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post("/v1/memories", json={"content": "x"}, headers=keys.h("admin"))
    assert r.status_code == 400
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/memories", json={"content": "x", "user_id": "dora"}, headers=keys.h("admin")
    )
    assert r.status_code == 201
    assert r.json()["user_id"] == "dora"


async def test_auth_can_be_disabled_explicitly(
    settings: Settings, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    open_settings = settings.model_copy(update={"auth_disabled": True})
    async with await AsyncMemVault.open(open_settings, clock=clock) as v:
        app = create_app(vault=v)
        assert "AUTHENTICATION IS DISABLED" in caplog.text
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.post("/v1/memories", json={"content": "x", "user_id": "eve"})
            assert r.status_code == 201


async def test_rate_limit_answers_429_with_retry_after(
    client: httpx.AsyncClient, vault: AsyncMemVault
) -> None:
    _, secret = await vault.create_api_key("alice", rate_per_minute=3)
    h = {"X-API-Key": secret}
    codes = [(await client.get("/v1/users/me", headers=h)).status_code for _ in range(4)]
    assert codes[:3] != [429] * 3
    assert codes[3] == 429
    r = await client.get("/v1/users/me", headers=h)
    assert error(r) == "RATE_LIMITED"
    assert int(r.headers["retry-after"]) >= 1


# ----------------------------------------------------------------------------- bad input
async def test_request_ids_are_echoed(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.get("/v1/memories/mem_x", headers={**keys.h("alice"), "X-Request-ID": "abc-1"})
    assert r.headers["x-request-id"] == "abc-1"
    assert r.json()["request_id"] == "abc-1"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"].startswith("req_")


async def test_malformed_json_and_wrong_content_type(client: httpx.AsyncClient, keys: Keys) -> None:
    h = {**keys.h("alice"), "content-type": "application/json"}
    r = await client.post("/v1/memories", content=b'{"content": "x"', headers=h)
    assert r.status_code == 422
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/memories",
        content=b"content=x",
        headers={**keys.h("alice"), "content-type": "text/plain"},
    )
    assert r.status_code == 422
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post("/v1/memories", json=[1, 2], headers=keys.h("alice"))
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/memories", json={"content": "x", "surprise": 1}, headers=keys.h("alice")
    )
    assert error(r) == "INVALID_ARGUMENT"


async def test_oversize_bodies_are_refused_before_reading(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    big = json.dumps({"content": "x" * 2_000_000}).encode()
    r = await client.post(
        "/v1/memories", content=big, headers={**keys.h("alice"), "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert error(r) == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    r = await client.post(
        "/v1/memories",
        content=chunks(),
        headers={**keys.h("alice"), "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert error(r) == "PAYLOAD_TOO_LARGE"
    r = await client.post("/v1/memories", json={"content": "y" * 70_000}, headers=keys.h("alice"))
    assert r.status_code == 413
    assert error(r) == "PAYLOAD_TOO_LARGE"


STRING_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/memories", {"content": "ok"}),
    ("POST", "/v1/users/me/messages", {"role": "user", "content": "ok"}),
    ("POST", "/v1/users/me/facts", {"content": "ok", "category": "general"}),
    ("PUT", "/v1/users/me/summary", {"content": "ok"}),
    ("POST", "/v1/search", {"query": "ok"}),
    ("POST", "/v1/context", {"message": "ok"}),
]


@pytest.mark.parametrize(("method", "path", "body"), STRING_FIELDS)
async def test_nul_bytes_are_refused_and_unicode_round_trips(
    client: httpx.AsyncClient, keys: Keys, method: str, path: str, body: dict[str, Any]
) -> None:
    h = keys.h("alice")
    for field in body:
        bad = {**body, field: body[field] + "\x00"}
        r = await client.request(method, path, json=bad, headers=h)
        assert r.status_code in (400, 422), (field, r.text)
        assert error(r) == "INVALID_ARGUMENT"
    text = "日本語 ✓ مرحبا 🙂"
    good = {k: (text if k in ("content", "query", "message") else v) for k, v in body.items()}
    r = await client.request(method, path, json=good, headers=h)
    assert r.status_code in (200, 201), r.text
    if path == "/v1/memories":
        got = await client.get(f"/v1/memories/{r.json()['memory_id']}", headers=h)
        assert got.json()["content"] == text


async def test_metrics_count_routes_by_template(client: httpx.AsyncClient, keys: Keys) -> None:
    for _ in range(2):
        await client.get(f"/v1/memories/mem_{'0' * 26}", headers=keys.h("alice"))
    text = (await client.get("/metrics")).text
    assert (
        'memvault_http_requests_total{code="404",method="GET",route="/v1/memories/{memory_id}"} 2.0'
        in text
    )
    assert "memvault_http_request_duration_seconds_bucket" in text
    assert 'memvault_errors_total{code="NOT_FOUND"} 2.0' in text


def _counter(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(f"{name} "))
    return float(line.split()[1])


async def test_metrics_count_query_embeddings(client: httpx.AsyncClient, keys: Keys) -> None:
    h = keys.h("alice")
    await client.post("/v1/memories", json={"content": "Drinks oolong tea at night"}, headers=h)
    names = ("hits", "misses", "batches")
    full = {
        "hits": "memvault_query_cache_hits_total",
        "misses": "memvault_query_cache_misses_total",
        "batches": "memvault_query_embed_batches_total",
    }
    text = (await client.get("/metrics")).text
    before = {n: _counter(text, full[n]) for n in names}
    for _ in range(2):  # the same question twice: embedded once, then from the cache
        r = await client.post("/v1/search", json={"query": "which tea at night?"}, headers=h)
        assert r.status_code == 200
    text = (await client.get("/metrics")).text
    after = {n: _counter(text, full[n]) for n in names}
    assert {n: after[n] - before[n] for n in names} == {"hits": 1, "misses": 1, "batches": 1}


MEMORY_STRINGS = {
    "content": "text",
    "namespace": "notes",
    "key": "k1",
    "memory_type": "fact",
    "category": "food",
    "session_id": "s1",
    "agent_id": "bot",
}


@pytest.mark.parametrize("field", sorted(MEMORY_STRINGS))
async def test_nul_in_any_memory_string_field_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, keys: Keys, field: str
) -> None:
    h = keys.h("alice")
    await client.post("/v1/memories", json={"content": "kept"}, headers=h)
    body = {**MEMORY_STRINGS, field: MEMORY_STRINGS[field] + "\x00x"}
    r = await client.post("/v1/memories", json=body, headers=h)
    assert r.status_code == 400, r.text
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.post("/v1/memories", json={"content": "t", "tags": ["a\x00"]}, headers=h)
    assert error(r) == "INVALID_ARGUMENT"
    items = (await client.get("/v1/memories", headers=h)).json()["items"]
    assert [m["content"] for m in items] == ["kept"]


async def test_metadata_and_profile_strings_round_trip_exactly(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    h = keys.h("alice")
    odd = {"nul": "a\x00b", "emoji": "🙂", "rtl": "مرحبا", "quote": '"; DROP TABLE x; --'}
    r = await client.post("/v1/memories", json={"content": "m", "metadata": odd}, headers=h)
    got = (await client.get(f"/v1/memories/{r.json()['memory_id']}", headers=h)).json()
    assert got["metadata"] == odd
    r = await client.put("/v1/users/me", json={"profile": odd, "username": "Zoë"}, headers=h)
    assert r.json()["profile"] == odd
    assert r.json()["username"] == "Zoë"
    r = await client.put("/v1/users/me", json={"username": "a\x00"}, headers=h)
    assert error(r) == "INVALID_ARGUMENT"
    r = await client.put("/v1/global-context/k%00", json={"value": 1}, headers=keys.h("admin"))
    assert error(r) == "INVALID_ARGUMENT"


async def test_searches_beyond_the_concurrency_limit_wait_their_turn(
    settings: Settings, clock: FrozenClock
) -> None:
    import asyncio

    one = settings.model_copy(update={"search_concurrency": 1})
    async with await AsyncMemVault.open(one, clock=clock) as v:
        _, secret = await v.create_api_key("alice")
        await v.add("alice", "Drinks oolong tea at night")
        app = create_app(vault=v)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            h = {"X-API-Key": secret}
            replies = await asyncio.gather(
                *(c.post("/v1/search", json={"query": f"tea {i}"}, headers=h) for i in range(6))
            )
    assert [r.status_code for r in replies] == [200] * 6
    assert all(r.json()["hits"] for r in replies)


@pytest.mark.parametrize(
    ("header", "status"), [('W/"1"', 200), ("1", 200), ("*", 200), ('"x"', 400), ('"9"', 409)]
)
async def test_if_match_forms(
    client: httpx.AsyncClient, keys: Keys, header: str, status: int
) -> None:
    h = keys.h("alice")
    mid = (await client.post("/v1/memories", json={"content": "v1"}, headers=h)).json()["memory_id"]
    r = await client.patch(
        f"/v1/memories/{mid}", json={"content": "v2"}, headers={**h, "If-Match": header}
    )
    assert r.status_code == status, r.text
