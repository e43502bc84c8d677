"""A user key never reaches another user's data: every route, walked with alice's key
aimed at bob's ids and data, answers PERMISSION_DENIED or NOT_FOUND (or only alice's own
data) and leaves bob's records as they were."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from memvault import AsyncMemVault, FrozenClock, Settings
from memvault.api import create_app

SECRET = "bob-secret-marker"

# A body for each route that takes one; `user_id` is bob wherever the body may name a user.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/memories"): {"user_id": "bob", "content": "x"},
    ("POST", "/v1/memories/batch"): {"user_id": "bob", "items": [{"content": "x"}]},
    ("POST", "/v1/memories/batch-get"): {"user_id": "bob", "memory_ids": ["{memory_id}"]},
    ("PATCH", "/v1/memories/{memory_id}"): {"content": "overwritten"},
    ("PUT", "/v1/memories/by-key/{namespace}/{key}"): {"user_id": "bob", "content": "x"},
    ("POST", "/v1/memories/{memory_id}/revert"): {"version": 1},
    ("POST", "/v1/search"): {"user_id": "bob", "query": "secret marker"},
    ("PUT", "/v1/users/{user_id}"): {"username": "hijacked"},
    ("POST", "/v1/users/{user_id}/messages"): {"role": "user", "content": "x"},
    ("POST", "/v1/users/{user_id}/facts"): {"content": "x"},
    ("POST", "/v1/users/{user_id}/permanent"): {"content": "x"},
    ("POST", "/v1/users/{user_id}/sessions"): {},
    ("PATCH", "/v1/users/{user_id}/sessions/{session_id}"): {"metadata": {"a": 1}},
    ("PUT", "/v1/users/{user_id}/summary"): {"content": "x"},
    ("POST", "/v1/users/{user_id}/metrics/{name}/increment"): {"by": 1},
    ("POST", "/v1/users/{user_id}/streak"): {},
    ("POST", "/v1/context"): {"user_id": "bob", "message": "secret marker"},
    ("POST", "/api/v1/memory"): {"user_id": "bob", "content": "x"},
    ("POST", "/v1/keys"): {"user_id": "bob"},
    ("PUT", "/v1/global-context/{key}"): {"value": 1},
    ("POST", "/v1/memories/{memory_id}/restore"): {},
    ("POST", "/v1/users/{user_id}/sessions/{session_id}/end"): {},
    ("POST", "/v1/admin/purge"): {},
    ("POST", "/v1/users/{user_id}/remember"): {"messages": [{"role": "user", "content": "x"}]},
    ("POST", "/v1/users/{user_id}/jobs/retry"): {"job_ids": ["{job_id}"]},
    ("POST", "/v1/users/{user_id}/summary/generate"): {},
    ("POST", "/v1/users/{user_id}/import"): {},
}
# Routes whose answer is not about one user: checked for leaks, not for a refusal.
SHARED = {("GET", "/v1/global-context"), ("GET", "/v1/keys")}
OPEN = {"/healthz", "/readyz", "/metrics"}


@pytest.fixture
async def setup(
    settings: Settings, clock: FrozenClock
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], str]]:
    vault = await AsyncMemVault.open(settings.model_copy(update={"job_worker": False}), clock=clock)
    bob_mem = await vault.add("bob", f"{SECRET} memory", namespace="notes", key="diary")
    await vault.add("bob", f"{SECRET} deleted")
    bob_session = await vault.create_session("bob")
    await vault.add_message("bob", "user", f"{SECRET} message", extract=True)
    (bob_job,) = await vault.list_jobs(user_id="bob")
    await vault.add_user_fact("bob", f"{SECRET} fact", "misc")
    await vault.save_summary("bob", f"{SECRET} summary")
    bob_key, _ = await vault.create_api_key("bob")
    _, alice = await vault.create_api_key("alice")
    await vault.add("alice", "alice's own memory")
    ids = {
        "user_id": "bob",
        "memory_id": bob_mem.memory_id,
        "session_id": bob_session.session_id,
        "key_id": bob_key.key_id,
        "namespace": "notes",
        "key": "diary",
        "name": "visits",
        "job_id": bob_job.job_id,
    }
    app = create_app(vault=vault)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, ids, alice
    await vault.close()


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the OpenAPI document (so a new route is walked without a change
    here), as (method, path template, operation)."""
    doc = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        if path not in OPEN
        for method, op in item.items()
    ]


def _routes() -> list[tuple[str, str]]:
    """Erasing a user comes last: with `me` it erases the caller."""
    routes = [(m, p) for m, p, _ in _operations()]
    return sorted(routes, key=lambda r: r == ("DELETE", "/v1/users/{user_id}"))


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def test_every_route_with_a_body_has_one_here() -> None:
    for method, path, op in _operations():
        if "requestBody" in op:
            assert (method, path) in BODIES, (method, path)


async def test_a_user_key_never_reaches_another_users_data(
    setup: tuple[httpx.AsyncClient, dict[str, str], str],
) -> None:
    client, ids, alice = setup
    h = {"Authorization": f"Bearer {alice}"}
    walked = 0
    for method, template in _routes():
        path = template.format(**ids)
        body = _fill(BODIES.get((method, template)), ids)
        r = await client.request(method, path, json=body, params={"user_id": "bob"}, headers=h)
        walked += 1
        assert SECRET not in r.text, (method, template, r.text[:300])
        if (method, template) in SHARED:
            continue
        assert r.status_code in (400, 403, 404), (method, template, r.status_code, r.text[:300])
        if r.status_code == 400:  # a user key naming no user acts for itself: bob's id unknown
            assert r.json()["error"]["code"] == "INVALID_ARGUMENT", (method, template)
    assert walked >= 40


def _unnamed(value: Any) -> Any:
    """`value` with no `user_id`: the key's own user is meant."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "user_id"}
    return value


async def test_another_users_ids_are_not_found_for_a_user_key(
    setup: tuple[httpx.AsyncClient, dict[str, str], str],
) -> None:
    client, ids, alice = setup
    h = {"Authorization": f"Bearer {alice}"}
    mine = {**ids, "user_id": "me"}
    by_id = 0
    for method, template in _routes():
        body = _unnamed(_fill(BODIES.get((method, template)), mine))
        r = await client.request(method, template.format(**mine), json=body, headers=h)
        assert SECRET not in r.text, (method, template, r.text[:300])
        assert r.status_code < 500, (method, template, r.text[:300])
        if any(
            f"{{{name}}}" in template for name in ("memory_id", "session_id", "key_id", "job_id")
        ):
            by_id += 1
            assert r.status_code == 404, (method, template, r.status_code, r.text[:300])
            assert r.json()["error"]["code"] == "NOT_FOUND"
    assert by_id >= 10


async def test_bobs_records_are_untouched_after_the_walk(
    setup: tuple[httpx.AsyncClient, dict[str, str], str],
) -> None:
    client, ids, alice = setup
    h = {"Authorization": f"Bearer {alice}"}
    mine = {**ids, "user_id": "me"}
    for method, template in _routes():
        body = _fill(BODIES.get((method, template)), ids)
        await client.request(
            method, template.format(**ids), json=body, params={"user_id": "bob"}, headers=h
        )
        body = _unnamed(_fill(BODIES.get((method, template)), mine))
        await client.request(method, template.format(**mine), json=body, headers=h)
    # Bob's own key still works and sees everything as it was.
    app = client._transport.app  # type: ignore[attr-defined]
    vault: AsyncMemVault = app.state.vault
    mem = await vault.get("bob", ids["memory_id"])
    assert mem.content == f"{SECRET} memory"
    assert mem.version == 1
    assert (await vault.get_summary("bob")).content == f"{SECRET} summary"  # type: ignore[union-attr]
    assert (await vault.get_user("bob")).username is None
    assert len(await vault.get_message_history("bob")) == 1
    assert [j.status for j in await vault.list_jobs(user_id="bob")] == ["pending"]
    assert (await vault.get_session("bob", ids["session_id"])).status == "active"
    assert [k.key_id for k in await vault.list_api_keys("bob")] == [ids["key_id"]]
    assert await vault.count("bob") == 3
