"""The memory rules on a real SQLite file through the blocking library."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memvault import (
    ConflictError,
    FrozenClock,
    InvalidArgumentError,
    MemVault,
    NotFoundError,
    Settings,
)
from tests.conftest import ALL_BACKENDS

# The contract holds on a store that encrypts memory content too.
BACKENDS = (*ALL_BACKENDS, "sealed")


def test_add_then_get_round_trips_every_field(vault: MemVault) -> None:
    m = vault.add(
        "alice",
        "Prefers green tea",
        namespace="prefs",
        key="drink",
        memory_type="preference",
        metadata={"source": "chat", "n": 2},
        tags=["drinks", "tea"],
        importance=0.8,
        session_id="s1",
        agent_id="agent-7",
        category="food",
    )
    got = vault.get("alice", m.memory_id)
    assert got.model_dump(exclude={"access_count", "last_accessed_at"}) == m.model_dump(
        exclude={"access_count", "last_accessed_at"}
    )
    assert (got.namespace, got.key, got.memory_type) == ("prefs", "drink", "preference")
    assert got.metadata == {"source": "chat", "n": 2}
    assert got.tags == ["drinks", "tea"]
    assert got.version == 1
    assert got.created_at.tzinfo is not None


def test_object_content_round_trips_unchanged(vault: MemVault) -> None:
    content = {"text": "User asked about the weather", "source_agent": "nlu", "n": [1, 2]}
    m = vault.add("alice", content)
    assert vault.get("alice", m.memory_id).content == content
    assert vault.search("alice", "weather")[0].memory.memory_id == m.memory_id


def test_key_is_generated_when_absent(vault: MemVault) -> None:
    m = vault.add("alice", "x")
    assert m.key == m.memory_id


def test_same_key_in_same_namespace_conflicts(vault: MemVault) -> None:
    vault.add("alice", "one", key="k")
    with pytest.raises(ConflictError):
        vault.add("alice", "two", key="k")


def test_same_key_in_other_namespace_does_not_conflict(vault: MemVault) -> None:
    vault.add("alice", "one", key="k")
    vault.add("alice", "two", key="k", namespace="other")
    vault.add("bob", "three", key="k")


def test_deleted_key_can_be_reused(vault: MemVault) -> None:
    m = vault.add("alice", "one", key="k")
    vault.delete("alice", m.memory_id)
    vault.add("alice", "two", key="k")


def test_restore_fails_when_key_was_reused(vault: MemVault) -> None:
    m = vault.add("alice", "one", key="k")
    vault.delete("alice", m.memory_id)
    vault.add("alice", "two", key="k")
    with pytest.raises(ConflictError):
        vault.restore("alice", m.memory_id)


def test_other_users_memory_is_not_found(vault: MemVault) -> None:
    m = vault.add("alice", "secret")
    with pytest.raises(NotFoundError):
        vault.get("bob", m.memory_id)
    with pytest.raises(NotFoundError):
        vault.update("bob", m.memory_id, content="stolen")
    with pytest.raises(NotFoundError):
        vault.delete("bob", m.memory_id)
    assert vault.get_many("bob", [m.memory_id]) == []
    assert vault.get("alice", m.memory_id).content == "secret"


def test_update_bumps_version_and_keeps_history(vault: MemVault, clock: FrozenClock) -> None:
    m = vault.add("alice", "v1")
    clock.advance(5)
    m2 = vault.update("alice", m.memory_id, content="v2", importance=0.9)
    assert (m2.version, m2.content, m2.importance) == (2, "v2", 0.9)
    assert m2.updated_at > m2.created_at
    h = vault.history("alice", m.memory_id)
    assert [(e.version, e.operation, e.snapshot["content"]) for e in h] == [
        (1, "create", "v1"),
        (2, "update", "v2"),
    ]


def test_history_is_copied_on_change(vault: MemVault, clock: FrozenClock) -> None:
    """A memory never changed has one creation entry read from its row (history_id 0);
    the first change stores it with its snapshot, and every later version keeps its own."""
    m = vault.add("alice", "v1", tags=["a"])
    (only,) = vault.history("alice", m.memory_id)
    assert (only.history_id, only.version, only.operation) == (0, 1, "create")
    assert only.changed_at == m.created_at
    assert only.snapshot["tags"] == ["a"]
    clock.advance(1)
    vault.update("alice", m.memory_id, content="v2")
    clock.advance(1)
    vault.update("alice", m.memory_id, content="v3", actor="editor")
    vault.delete("alice", m.memory_id, actor="cleaner")
    h = vault.history("alice", m.memory_id)
    assert [(e.version, e.operation, e.snapshot["content"], e.actor) for e in h] == [
        (1, "create", "v1", None),
        (2, "update", "v2", None),
        (3, "update", "v3", "editor"),
        (4, "delete", "v3", "cleaner"),
    ]
    assert all(e.history_id > 0 for e in h)
    assert h[-1].snapshot["deleted_at"] is not None
    vault.restore("alice", m.memory_id)
    vault.revert("alice", m.memory_id, 1)
    assert vault.get("alice", m.memory_id).content == "v1"
    keyed = vault.add("alice", "with actor", actor="importer")
    (entry,) = vault.history("alice", keyed.memory_id)
    assert entry.history_id > 0
    assert entry.actor == "importer"


def test_update_with_stale_version_conflicts_and_changes_nothing(vault: MemVault) -> None:
    m = vault.add("alice", "v1")
    vault.update("alice", m.memory_id, content="v2", expected_version=1)
    with pytest.raises(ConflictError) as info:
        vault.update("alice", m.memory_id, content="v3", expected_version=1)
    assert info.value.details["current_version"] == 2
    assert vault.get("alice", m.memory_id).content == "v2"


def test_update_without_change_keeps_version(vault: MemVault) -> None:
    m = vault.add("alice", "same", importance=0.3)
    assert vault.update("alice", m.memory_id, importance=0.3).version == 1


def test_soft_delete_hides_everywhere_and_restore_brings_back(vault: MemVault) -> None:
    m = vault.add("alice", "temporary thought about tea")
    vault.delete("alice", m.memory_id)
    with pytest.raises(NotFoundError):
        vault.get("alice", m.memory_id)
    assert vault.list_memories("alice").items == []
    assert vault.search("alice", "tea") == []
    assert vault.count("alice") == 0
    with pytest.raises(NotFoundError):
        vault.delete("alice", m.memory_id)
    back = vault.restore("alice", m.memory_id)
    assert back.deleted_at is None
    assert back.version == 3
    assert vault.get("alice", m.memory_id).content == "temporary thought about tea"


def test_list_can_include_deleted(vault: MemVault) -> None:
    m = vault.add("alice", "gone")
    vault.delete("alice", m.memory_id)
    items = vault.list_memories("alice", filters={"include_deleted": True}).items
    assert [x.memory_id for x in items] == [m.memory_id]
    assert items[0].deleted_at is not None


def test_expired_memory_is_hidden_everywhere(vault: MemVault, clock: FrozenClock) -> None:
    m = vault.add("alice", "ephemeral tea note", ttl_seconds=60)
    assert vault.get("alice", m.memory_id).expires_at == clock.now() + timedelta(seconds=60)
    clock.advance(61)
    with pytest.raises(NotFoundError):
        vault.get("alice", m.memory_id)
    with pytest.raises(NotFoundError):
        vault.update("alice", m.memory_id, content="x")
    assert vault.list_memories("alice").items == []
    assert vault.search("alice", "tea") == []
    assert vault.get_many("alice", [m.memory_id]) == []


def test_expired_key_can_be_taken_by_a_new_memory(vault: MemVault, clock: FrozenClock) -> None:
    vault.add("alice", "old", key="k", ttl_seconds=10)
    clock.advance(11)
    new = vault.add("alice", "new", key="k")
    assert vault.get("alice", new.memory_id).content == "new"


def test_update_can_set_and_clear_expiry(vault: MemVault, clock: FrozenClock) -> None:
    m = vault.add("alice", "x")
    m = vault.update("alice", m.memory_id, ttl_seconds=100)
    assert m.expires_at == clock.now() + timedelta(seconds=100)
    m = vault.update("alice", m.memory_id, expires_at=None)
    assert m.expires_at is None
    clock.advance(1000)
    assert vault.get("alice", m.memory_id).content == "x"


def test_purge_removes_expired_and_old_deleted_only(vault: MemVault, clock: FrozenClock) -> None:
    keep = vault.add("alice", "keep")
    vault.add("alice", "expires", ttl_seconds=10)
    recent = vault.add("alice", "deleted recently")
    old = vault.add("alice", "deleted long ago")
    vault.delete("alice", old.memory_id)
    clock.advance(days=31)
    vault.delete("alice", recent.memory_id)
    done = vault.purge()
    assert (done.expired, done.deleted) == (1, 1)
    assert vault.get("alice", keep.memory_id).content == "keep"
    vault.restore("alice", recent.memory_id)
    with pytest.raises(NotFoundError):
        vault.history("alice", old.memory_id)  # hard-deleted with its history


def test_erase_user_removes_everything_of_that_user_only(vault: MemVault) -> None:
    vault.add("alice", "a")
    vault.add_message("alice", "user", "hi")
    vault.save_summary("alice", "sum")
    b = vault.add("bob", "b")
    counts = vault.erase_user("alice")
    assert counts["memories"] == 1
    assert counts["messages"] == 1
    assert counts["summaries"] == 1
    with pytest.raises(NotFoundError):
        vault.get_user("alice")
    assert vault.get_summary("alice") is None
    assert vault.get_message_history("alice") == []
    assert vault.get("bob", b.memory_id).content == "b"
    with pytest.raises(NotFoundError):
        vault.erase_user("alice")


def test_upsert_creates_then_updates_in_place(vault: MemVault) -> None:
    a = vault.upsert("alice", "prefs", "drink", "tea")
    b = vault.upsert("alice", "prefs", "drink", "coffee", importance=0.9)
    assert a.memory_id == b.memory_id
    assert (b.version, b.content, b.importance) == (2, "coffee", 0.9)
    assert [e.operation for e in vault.history("alice", a.memory_id)] == ["create", "upsert"]


def test_revert_restores_an_earlier_version(vault: MemVault) -> None:
    m = vault.add("alice", "first", tags=["a"])
    vault.update("alice", m.memory_id, content="second", tags=["b"])
    r = vault.revert("alice", m.memory_id, 1)
    assert (r.content, r.tags, r.version) == ("first", ["a"], 3)
    with pytest.raises(NotFoundError):
        vault.revert("alice", m.memory_id, 9)


def test_batch_create_is_all_or_nothing(vault: MemVault) -> None:
    vault.add("alice", "taken", key="k")
    with pytest.raises(ConflictError):
        vault.add_many("alice", [{"content": "fine"}, {"content": "dup", "key": "k"}])
    assert vault.count("alice") == 1
    with pytest.raises(ConflictError):
        vault.add_many("alice", [{"content": "a", "key": "z"}, {"content": "b", "key": "z"}])
    with pytest.raises(InvalidArgumentError) as info:
        vault.add_many("alice", [{"content": "ok"}, {"content": ""}])
    assert info.value.details["index"] == 1
    assert vault.count("alice") == 1


def test_batch_get_keeps_request_order_and_skips_missing(vault: MemVault) -> None:
    ms = vault.add_many("alice", [{"content": f"m{i}"} for i in range(5)])
    gone = ms[1]
    vault.delete("alice", gone.memory_id)
    want = [ms[3].memory_id, gone.memory_id, ms[0].memory_id, ms[3].memory_id]
    assert [m.content for m in vault.get_many("alice", want)] == ["m3", "m0"]


def test_list_pages_through_everything_once(vault: MemVault, clock: FrozenClock) -> None:
    for i in range(25):
        vault.add("alice", f"m{i}", importance=(i % 5) / 5)
        clock.advance(1)
    for order in ("created_desc", "created_asc", "importance_desc", "updated_desc"):
        seen: list[str] = []
        cursor = None
        while True:
            page = vault.list_memories("alice", order=order, limit=7, cursor=cursor)
            seen += [m.content for m in page.items]  # type: ignore[misc]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sorted(seen) == sorted(f"m{i}" for i in range(25)), order
    first = vault.list_memories("alice", limit=3).items
    assert [m.content for m in first] == ["m24", "m23", "m22"]


def test_cursor_from_another_order_is_rejected(vault: MemVault) -> None:
    for i in range(3):
        vault.add("alice", f"m{i}")
    cursor = vault.list_memories("alice", limit=1).next_cursor
    with pytest.raises(InvalidArgumentError):
        vault.list_memories("alice", order="created_asc", cursor=cursor)
    with pytest.raises(InvalidArgumentError):
        vault.list_memories("alice", cursor="not-a-cursor")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"namespaces": ["work"]}, {"w1", "w2"}),
        ({"memory_types": ["fact"]}, {"w2"}),
        ({"tags_any": ["x", "y"]}, {"d1", "w1"}),
        ({"tags_all": ["x", "y"]}, {"w1"}),
        ({"metadata": {"lang": "en"}}, {"d1"}),
        ({"metadata": {"n": 3}}, {"w2"}),
        ({"metadata": {"ok": True}}, {"w1"}),
        ({"min_importance": 0.7}, {"w2"}),
        ({"session_id": "s1"}, {"d1"}),
        ({"agent_id": "bot"}, {"w1"}),
        ({"category": "job"}, {"w2"}),
    ],
)
def test_list_filters(vault: MemVault, filters: dict, expected: set[str]) -> None:
    vault.add("alice", "d1", tags=["x"], metadata={"lang": "en"}, session_id="s1")
    vault.add(
        "alice", "w1", namespace="work", tags=["x", "y"], metadata={"ok": True}, agent_id="bot"
    )
    vault.add(
        "alice",
        "w2",
        namespace="work",
        memory_type="fact",
        metadata={"n": 3},
        importance=0.9,
        category="job",
    )
    got = {m.content for m in vault.list_memories("alice", filters=filters).items}
    assert got == expected


def test_list_time_range_filters(vault: MemVault, clock: FrozenClock) -> None:
    vault.add("alice", "early")
    t = clock.advance(60)
    vault.add("alice", "late")
    got = vault.list_memories("alice", filters={"created_after": t}).items
    assert [m.content for m in got] == ["late"]
    got = vault.list_memories("alice", filters={"created_before": t}).items
    assert [m.content for m in got] == ["early"]


def test_list_for_unknown_user_is_not_found(vault: MemVault) -> None:
    with pytest.raises(NotFoundError):
        vault.list_memories("nobody")


def test_reads_count_accesses(vault: MemVault, clock: FrozenClock) -> None:
    m = vault.add("alice", "counted")
    clock.advance(5)
    vault.get("alice", m.memory_id)
    vault.get_many("alice", [m.memory_id])
    got = vault.get("alice", m.memory_id)
    assert got.access_count == 3
    assert got.last_accessed_at == clock.now()
    assert got.version == 1
    assert got.updated_at == m.updated_at


def test_access_counts_survive_reopen(settings: Settings, clock: FrozenClock) -> None:
    with MemVault(settings, clock=clock) as v:
        m = v.add("alice", "x")
        for _ in range(4):
            v.get("alice", m.memory_id)
    with MemVault(settings, clock=clock) as v:
        stored = v.list_memories("alice").items[0]
        assert stored.access_count == 4


def test_access_counts_from_two_instances_add_up(settings: Settings, clock: FrozenClock) -> None:
    a, b = MemVault(settings, clock=clock), MemVault(settings, clock=clock)
    m = a.add("alice", "x")
    for _ in range(3):
        a.get("alice", m.memory_id)
        b.get("alice", m.memory_id)
    a.close()
    b.close()
    with MemVault(settings, clock=clock) as v:
        assert v.list_memories("alice").items[0].access_count == 6


def test_permanent_memories_cannot_expire(vault: MemVault) -> None:
    p = vault.add_permanent_memory("alice", "Birthday is 4 May")
    assert [m.memory_id for m in vault.get_permanent_memories("alice")] == [p.memory_id]
    with pytest.raises(InvalidArgumentError):
        vault.add_permanent_memory("alice", "x", ttl_seconds=5)
    with pytest.raises(InvalidArgumentError):
        vault.update("alice", p.memory_id, ttl_seconds=5)


def test_search_is_scoped_to_the_user(vault: MemVault) -> None:
    vault.add("alice", "green tea at night")
    vault.add("bob", "green tea in the morning")
    hits = vault.search("alice", "green tea")
    assert [h.memory.user_id for h in hits] == ["alice"]


@pytest.mark.parametrize("query", ['"', "*", "NEAR(a b)", "-tea", "tea OR", "AND", "ü ß 日本"])
def test_search_survives_fts_syntax(vault: MemVault, query: str) -> None:
    vault.add("alice", "tea AND coffee near the window")
    vault.search("alice", query)


def test_inspect_shows_any_state_and_counts_no_access(vault: MemVault) -> None:
    m = vault.add("alice", "Prefers green tea")
    vault.get("alice", m.memory_id)
    seen = vault.inspect("alice", m.memory_id)
    assert (seen.content, seen.access_count) == ("Prefers green tea", 1)
    vault.delete("alice", m.memory_id)
    gone = vault.inspect("alice", m.memory_id)
    assert gone.deleted_at is not None
    assert gone.access_count == 1  # inspecting counted nothing
    with pytest.raises(NotFoundError):
        vault.inspect("bob", m.memory_id)  # another user's id
    with pytest.raises(InvalidArgumentError):
        vault.inspect("alice", "not-an-id")


def test_a_batch_runs_with_the_garbage_collector_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # short-lived objects of a batch are not moved to older generations (a full
    # collection of a big process each time enough of them were): the collector is off
    # while a batch is built and stored, on again after, and left off when it was off
    from memvault.service import memories as service

    seen: list[bool] = []
    real = service.build_memory_from

    def watching(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "build_memory_from", watching)
    url = f"sqlite:///{tmp_path / 'gc.db'}"
    with MemVault(Settings(data_dir=tmp_path, database_url=url, embedder="none")) as v:
        v.add_many("alice", [{"content": "one"}, {"content": "two"}])
        assert seen == [False, False]
        assert gc.isenabled()
        with pytest.raises(InvalidArgumentError):
            v.add_many("alice", [{"content": "three"}, {"content": ""}])
        assert gc.isenabled()  # after a refused batch too
        gc.disable()
        try:
            v.add("alice", "four")
            assert not gc.isenabled()  # the application's choice stands
        finally:
            gc.enable()
    seen.clear()
    off = Settings(data_dir=tmp_path, database_url=url, embedder="none", batch_gc_pause=False)
    with MemVault(off) as v:
        v.add("alice", "five")
    assert seen == [True]
