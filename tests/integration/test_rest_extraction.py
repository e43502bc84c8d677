"""Extraction, jobs, temporal validity and summaries through the REST door."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from memvault import AsyncMemVault, FrozenClock, Settings
from memvault.api import create_app
from tests.integration.rest_helpers import Keys


@pytest.fixture
async def vault(settings: Settings, clock: FrozenClock) -> AsyncIterator[AsyncMemVault]:
    v = await AsyncMemVault.open(settings.model_copy(update={"job_worker": False}), clock=clock)
    yield v
    await v.close()


@pytest.fixture
async def keys(vault: AsyncMemVault) -> Keys:
    secrets = [(await vault.create_api_key(who))[1] for who in ("alice", "bob")]
    secrets.append((await vault.create_api_key(admin=True))[1])
    return Keys(*secrets)


@pytest.fixture
async def client(vault: AsyncMemVault) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(vault=vault), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_remember_queues_then_the_worker_extracts(
    client: httpx.AsyncClient, keys: Keys, vault: AsyncMemVault, clock: FrozenClock
) -> None:
    h = keys.h("alice")
    body = {
        "messages": [
            {"role": "user", "content": "I live in Paris and I'm allergic to cats."},
            {"role": "assistant", "content": "Noted!"},
        ]
    }
    r = await client.post("/v1/users/me/remember", json=body, headers=h)
    assert r.status_code == 202
    assert [m["role"] for m in r.json()["messages"]] == ["user", "assistant"]
    assert r.json()["jobs"] == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    (job,) = (await client.get("/v1/users/me/jobs", params={"status": "pending"}, headers=h)).json()
    assert job["kind"] == "extract"
    assert "lease_token" not in job
    assert (await vault.run_jobs()).done == 1
    r = await client.get(f"/v1/users/me/jobs/{job['job_id']}", headers=h)
    assert r.json()["status"] == "done"
    assert len(r.json()["result"]["added"]) == 2
    facts = (await client.get("/v1/users/me/facts", headers=h)).json()
    assert sorted(f["content"] for f in facts) == ["Is allergic to cats", "Lives in Paris"]
    # Moving supersedes, with wait: extracted before the answer.
    clock.advance(3600)
    moved = {"messages": [{"role": "user", "content": "I moved to Lyon."}], "wait": True}
    r = await client.post("/v1/users/me/remember", json=moved, headers=h)
    assert r.status_code == 200
    assert r.json()["jobs"]["done"] == 2
    facts = (await client.get("/v1/users/me/facts", headers=h)).json()
    assert sorted(f["content"] for f in facts) == ["Is allergic to cats", "Lives in Lyon"]
    paris = next(
        m
        for m in (
            await client.post(
                "/v1/search",
                json={"query": "Paris", "mode": "lexical", "filters": {"include_superseded": True}},
                headers=h,
            )
        ).json()["hits"]
    )["memory"]
    assert paris["superseded_by"] is not None
    assert paris["valid_to"] is not None
    history = (await client.get(f"/v1/memories/{paris['memory_id']}/history", headers=h)).json()
    assert history[-1]["operation"] == "supersede"
    r = await client.post(
        "/v1/search",
        json={"query": "lives", "mode": "lexical", "filters": {"as_of": paris["valid_from"]}},
        headers=h,
    )
    assert [x["memory"]["content"] for x in r.json()["hits"]] == ["Lives in Paris"]


async def test_messages_with_extract_and_bad_input(
    client: httpx.AsyncClient, keys: Keys, vault: AsyncMemVault
) -> None:
    h = keys.h("alice")
    r = await client.post(
        "/v1/users/me/messages",
        json={"role": "user", "content": "My name is Alice.", "extract": True},
        headers=h,
    )
    assert r.status_code == 201
    assert (await vault.job_counts("alice"))["pending"] == 1
    for bad in [
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x", "mood": "happy"}]},
        {"messages": "hello"},
    ]:
        r = await client.post("/v1/users/me/remember", json=bad, headers=h)
        assert r.status_code in (400, 422), bad
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/users/me/remember",
        json={"messages": [{"role": "user", "content": "x"}] * 101},
        headers=h,
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    r = await client.get("/v1/users/me/jobs", params={"status": "stuck"}, headers=h)
    assert r.status_code == 422
    r = await client.get("/v1/users/me/jobs/job_nope", headers=h)
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    r = await client.post(
        "/v1/memories",
        json={
            "content": "x",
            "valid_from": "2026-03-02T00:00:00Z",
            "valid_to": "2026-03-01T00:00:00Z",
        },
        headers=h,
    )
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


async def test_a_user_key_sees_only_its_jobs(
    client: httpx.AsyncClient, keys: Keys, vault: AsyncMemVault
) -> None:
    await vault.add_message("alice", "user", "I live in Paris.", extract=True)
    (job,) = await vault.list_jobs(user_id="alice")
    r = await client.get("/v1/users/alice/jobs", headers=keys.h("bob"))
    assert r.json()["error"]["code"] == "PERMISSION_DENIED"
    r = await client.get(f"/v1/users/bob/jobs/{job.job_id}", headers=keys.h("bob"))
    assert r.json()["error"]["code"] == "NOT_FOUND"
    r = await client.get("/v1/users/alice/jobs", headers=keys.h("admin"))
    assert [j["job_id"] for j in r.json()] == [job.job_id]


async def test_retry_failed_jobs(
    client: httpx.AsyncClient, keys: Keys, vault: AsyncMemVault
) -> None:
    h = keys.h("alice")
    r = await client.post("/v1/users/me/jobs/retry", json={}, headers=h)
    assert r.json() == {"queued": 0}
    r = await client.post("/v1/users/me/jobs/retry", json={"job_ids": ["bad"]}, headers=h)
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


async def test_generate_summary(
    client: httpx.AsyncClient, keys: Keys, vault: AsyncMemVault
) -> None:
    h = keys.h("alice")
    r = await client.post("/v1/users/me/summary/generate", json={}, headers=h)
    assert r.json()["error"]["code"] == "NOT_FOUND"
    body = {"messages": [{"role": "user", "content": "I'm vegetarian."}], "wait": True}
    await client.post("/v1/users/me/remember", json=body, headers=h)
    r = await client.post("/v1/users/me/summary/generate", json={}, headers=h)
    assert r.json()["content"].startswith("Preferences: Is vegetarian.")
    assert (await client.get("/v1/users/me/summary", headers=h)).json() == r.json()
    r = await client.get("/api/v1/memory/alice", headers=h)  # seed 003's route sees it
    assert r.json()["memory"]["content"].startswith("Preferences: Is vegetarian.")
    r = await client.post("/v1/users/me/summary/generate", json={"mode": "poem"}, headers=h)
    assert r.status_code == 422
