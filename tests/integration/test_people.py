"""Users, conversation history, facts, metrics and streaks, sessions, summary, global context;
seed 002's names; the async service."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from memvault import (
    AsyncMemVault,
    ConflictError,
    FrozenClock,
    MemVault,
    NotFoundError,
    Settings,
    load_settings,
)
from memvault import memory_management as mm


def test_history_is_capped_at_max_messages(settings: Settings, clock: FrozenClock) -> None:
    capped = settings.model_copy(update={"max_messages": 5})
    with MemVault(capped, clock=clock) as v:
        for i in range(12):
            v.add_message("alice", "user" if i % 2 == 0 else "assistant", f"m{i}")
        v.add_message("bob", "user", "bob's")
        assert [m.content for m in v.get_message_history("alice")] == [
            f"m{i}" for i in range(7, 12)
        ]
        assert [m.content for m in v.get_message_history("alice", limit=2)] == ["m10", "m11"]
        assert len(v.get_message_history("bob")) == 1
        assert v.get_metrics("alice").total_messages == 12


def test_messages_by_session(vault: MemVault) -> None:
    s = vault.create_session("alice")
    vault.add_message("alice", "user", "in session", session_id=s.session_id)
    vault.add_message("alice", "user", "outside")
    assert [m.content for m in vault.get_message_history("alice", session_id=s.session_id)] == [
        "in session"
    ]


def test_streak_grows_daily_and_resets_after_a_gap(vault: MemVault, clock: FrozenClock) -> None:
    assert vault.update_streak("alice").current_streak == 1
    assert vault.update_streak("alice").current_streak == 1  # same day
    clock.advance(days=1)
    assert vault.update_streak("alice").current_streak == 2
    clock.advance(days=1)
    m = vault.update_streak("alice")
    assert (m.current_streak, m.longest_streak) == (3, 3)
    clock.advance(days=3)
    m = vault.update_streak("alice")
    assert (m.current_streak, m.longest_streak, m.last_active_date) == (1, 3, clock.now().date())


def test_streak_uses_the_users_time_zone(vault: MemVault, clock: FrozenClock) -> None:
    # 2026-03-01 12:00 UTC is already 2026-03-02 in Kiritimati (UTC+14).
    vault.get_or_create_user("alice")
    vault.update_user("alice", timezone="Pacific/Kiritimati")
    assert vault.update_streak("alice").last_active_date == date(2026, 3, 2)


def test_user_messages_count_towards_the_streak(vault: MemVault, clock: FrozenClock) -> None:
    vault.add_message("alice", "user", "day one")
    clock.advance(days=1)
    vault.add_message("alice", "assistant", "reply")
    assert vault.get_metrics("alice").current_streak == 1
    vault.add_message("alice", "user", "day two")
    m = vault.get_metrics("alice")
    assert (m.current_streak, m.messages_by_role) == (2, {"user": 2, "assistant": 1})


def test_counters(vault: MemVault) -> None:
    vault.increment_metric("alice", "jokes_told")
    assert vault.increment_metric("alice", "jokes_told", 4).counters == {"jokes_told": 5}


def test_facts_by_category_and_exact_duplicates_merge(vault: MemVault) -> None:
    a = vault.add_user_fact("alice", "Lives in New York", "location")
    b = vault.add_user_fact("alice", "  lives in new   YORK ", "location")
    vault.add_user_fact("alice", "Works as a nurse", "work")
    assert a.memory_id == b.memory_id
    assert [f.text for f in vault.get_user_facts("alice", "location")] == ["Lives in New York"]
    assert len(vault.get_user_facts("alice")) == 2
    assert vault.get_user_facts("nobody") == []


def test_sessions_lifecycle(vault: MemVault) -> None:
    s = vault.create_session("alice", metadata={"device_info": "Windows PC"})
    s = vault.update_session("alice", s.session_id, metadata={"location": "Home"})
    assert s.metadata == {"device_info": "Windows PC", "location": "Home"}
    ended = vault.end_session("alice", s.session_id)
    assert ended.status == "ended"
    assert ended.ended_at is not None
    with pytest.raises(ConflictError):
        vault.end_session("alice", s.session_id)
    with pytest.raises(NotFoundError):
        vault.get_session("bob", s.session_id)
    assert [x.session_id for x in vault.list_sessions("alice", status="ended")] == [s.session_id]


def test_summary_upsert_keeps_created_at(vault: MemVault, clock: FrozenClock) -> None:
    first = vault.save_summary(7, "likes tea")
    clock.advance(60)
    second = vault.save_summary("7", "likes coffee")
    assert second.content == "likes coffee"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert vault.get_summary(7) == second
    assert vault.get_summary("8") is None


def test_global_context(vault: MemVault) -> None:
    vault.set_global_context("assistant_name", "Elysia")
    vault.set_global_context("limits", {"max": 3})
    assert vault.get_global_context() == {"assistant_name": "Elysia", "limits": {"max": 3}}
    vault.delete_global_context("limits")
    with pytest.raises(NotFoundError):
        vault.delete_global_context("limits")


def test_global_values_of_every_json_kind_read_back_exactly(vault: MemVault) -> None:
    values = {
        "zero": 0,
        "half": 1.5,
        "minus": -2.0,
        "big": 10**30,
        "digits": "0012",
        "yes": True,
        "nothing": None,
        "list": [1, "a"],
    }
    for key, value in values.items():
        vault.set_global_context(key, value)
    got = vault.get_global_context()
    assert got == values
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in values.items()}


def test_profile_merges_and_username_sticks(vault: MemVault) -> None:
    u = vault.get_or_create_user("alice", "Alice")
    assert u.username == "Alice"
    vault.update_user("alice", profile={"likes": "tea"})
    u = vault.update_user("alice", profile={"age": 30})
    assert u.profile == {"likes": "tea", "age": 30}
    assert vault.get_or_create_user("alice").username == "Alice"


def test_seed_002_store_api(tmp_path: Path) -> None:
    mm.initialize({"MAX_MESSAGES": 3, "DATA_DIR": str(tmp_path)})
    memory = mm.get_memory_store()
    user = memory.get_or_create_user("user123", "JohnDoe")
    assert user["username"] == "JohnDoe"
    for i in range(5):
        memory.add_message("user123", "user", f"Hello, Elysia! {i}")
    messages = memory.get_message_history("user123")
    assert [m["content"] for m in messages] == [f"Hello, Elysia! {i}" for i in (2, 3, 4)]
    assert set(messages[0]) == {"id", "role", "content", "timestamp"}
    memory.add_user_fact("user123", "Lives in New York", "location")
    facts = memory.get_user_facts("user123")
    assert [(f["fact"], f["category"]) for f in facts] == [("Lives in New York", "location")]
    assert memory.update_streak("user123")["current_streak"] == 1
    assert memory.update_metrics("user123", "logins")["logins"] == 1
    memory.update_global_context("assistant", "Elysia")
    assert memory.get_global_context() == {"assistant": "Elysia"}
    memory.add_permanent_memory("user123", "Birthday is 4 May")
    assert [p["content"] for p in memory.get_permanent_memories("user123")] == ["Birthday is 4 May"]
    memory.update_user_profile("user123", {"city": "NYC"})
    assert memory.get_user_profile("user123")["city"] == "NYC"
    assert memory.get_all_users() == ["user123"]
    assert (tmp_path / "memvault.db").exists()
    mm.initialize({"DATA_DIR": str(tmp_path)})
    assert len(mm.get_memory_store().get_message_history("user123")) == 3
    mm.get_memory_store().close()


def test_old_environment_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAX_MESSAGES", "7")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.max_messages == 7
    assert s.database_url == f"sqlite:///{tmp_path / 'memvault.db'}"
    monkeypatch.setenv("AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.db'}")
    assert load_settings().database_url.endswith("auth.db")
    monkeypatch.setenv("MEMVAULT_DATABASE_URL", f"sqlite:///{tmp_path / 'mv.db'}")
    assert load_settings().database_url.endswith("mv.db")


async def test_async_service_matches_blocking(avault: AsyncMemVault) -> None:
    m = await avault.add("alice", "green tea at night", tags=["drinks"])
    got = await avault.get("alice", m.memory_id)
    assert got.access_count == 1
    await avault.update("alice", m.memory_id, content="oolong tea")
    hits = await avault.search("alice", "oolong")
    assert [h.memory.memory_id for h in hits] == [m.memory_id]
    page = await avault.list_memories("alice")
    assert [x.content for x in page.items] == ["oolong tea"]
    msg = await avault.add_message("alice", "user", "hi")
    assert msg.role == "user"
    with pytest.raises(NotFoundError):
        await avault.get("bob", m.memory_id)


async def test_async_service_serves_concurrent_calls(avault: AsyncMemVault) -> None:
    import asyncio

    made = await asyncio.gather(*(avault.add("alice", f"m{i}") for i in range(50)))
    got = await asyncio.gather(*(avault.get("alice", m.memory_id) for m in made))
    assert sorted(g.content for g in got) == sorted(f"m{i}" for i in range(50))
    assert await avault.count("alice") == 50
