"""API keys, the audit log, erasing a user, export, and memory in prompts (the service calls
the REST door uses), on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvault import (
    FrozenClock,
    InvalidArgumentError,
    MemVault,
    NotFoundError,
    RateLimitedError,
    Settings,
    UnauthenticatedError,
)
from memvault.service.access import RateLimiter, SharedBuckets, hash_secret
from memvault.service.export import KINDS


def stored_bytes(settings: Settings) -> bytes:
    """Everything the store holds: the SQLite files (with the WAL), every JSON file, or
    every PostgreSQL row as text."""
    if settings.database_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in settings.data_dir.glob("mv.db*"))
    if settings.database_url.startswith("jsonfs"):
        root = settings.data_dir / "jsonfs"
        return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())
    import psycopg

    with psycopg.connect(settings.database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return b"".join(
            "".join(str(r) for r in conn.execute(f'SELECT t::text FROM "{t}" AS t')).encode()
            for t in tables
        )


def test_a_key_is_stored_hashed_and_authenticates(vault: MemVault, settings: Settings) -> None:
    key, secret = vault.create_api_key("alice", name="laptop")
    assert secret.startswith("mvk_")
    assert key.prefix == secret[:12]
    assert vault.authenticate(secret).key_id == key.key_id
    raw = stored_bytes(settings)
    assert secret.encode() not in raw
    assert hash_secret(secret).encode() in raw


def test_unknown_malformed_and_revoked_keys_are_refused(vault: MemVault) -> None:
    key, secret = vault.create_api_key("alice")
    with pytest.raises(UnauthenticatedError):
        vault.authenticate("mvk_" + "A" * 43)
    with pytest.raises(UnauthenticatedError):
        vault.authenticate("not a key")
    vault.authenticate(secret)  # cached now
    vault.revoke_api_key(key.key_id)
    with pytest.raises(UnauthenticatedError):
        vault.authenticate(secret)
    assert vault.list_api_keys("alice") == []
    assert [k.key_id for k in vault.list_api_keys("alice", include_revoked=True)] == [key.key_id]


def test_a_key_revoked_by_another_process_stops_after_the_cache_time(
    settings: Settings, clock: FrozenClock
) -> None:
    fresh = settings.model_copy(update={"auth_cache_s": 0.0})
    with MemVault(fresh, clock=clock) as server, MemVault(fresh, clock=clock) as admin:
        key, secret = admin.create_api_key("alice")
        assert server.authenticate(secret).key_id == key.key_id
        admin.revoke_api_key(key.key_id)
        with pytest.raises(UnauthenticatedError):
            server.authenticate(secret)


def test_a_key_is_for_a_user_or_admin_not_both(vault: MemVault) -> None:
    with pytest.raises(InvalidArgumentError):
        vault.create_api_key()
    with pytest.raises(InvalidArgumentError):
        vault.create_api_key("alice", admin=True)
    with pytest.raises(InvalidArgumentError):
        vault.create_api_key("alice", rate_per_minute=0)
    key, _ = vault.create_api_key(admin=True)
    assert key.admin


def test_revoking_an_unknown_key_is_not_found(vault: MemVault) -> None:
    with pytest.raises(NotFoundError):
        vault.revoke_api_key("key_nope")


def test_erasing_a_user_removes_its_keys_and_is_audited(vault: MemVault) -> None:
    vault.add("alice", "likes tea")
    vault.add("bob", "likes coffee")
    _, secret = vault.create_api_key("alice")
    counts = vault.erase_user("alice", actor="ops")
    assert counts["memories"] == 1
    assert counts["api_keys"] == 1
    with pytest.raises(UnauthenticatedError):
        vault.authenticate(secret)
    erased = [e for e in vault.audit_log("alice") if e.action == "user.erase"]
    assert len(erased) == 1
    assert erased[0].actor == "ops"
    assert erased[0].details["memories"] == 1
    assert vault.count("bob") == 1


def test_key_creation_and_revocation_are_audited(vault: MemVault) -> None:
    key, _ = vault.create_api_key("alice", actor="cli")
    vault.revoke_api_key(key.key_id, actor="cli")
    actions = [(e.action, e.details["key_id"]) for e in vault.audit_log()]
    assert actions == [("key.create", key.key_id), ("key.revoke", key.key_id)]
    first = vault.audit_log()[0].audit_id
    assert [e.action for e in vault.audit_log(after=first)] == ["key.revoke"]


def test_export_holds_everything_the_user_owns(vault: MemVault) -> None:
    m = vault.add("alice", "likes tea", tags=["drinks"])
    vault.update("alice", m.memory_id, content="likes oolong tea")
    gone = vault.add("alice", "old address")
    vault.delete("alice", gone.memory_id)
    vault.add_message("alice", "user", "hello")
    vault.create_session("alice")
    vault.save_summary("alice", "Alice likes tea.")
    vault.add("bob", "bob's secret")
    records = list(vault.export_user("alice"))
    kinds = [k for k, _ in records]
    assert kinds[0] == "header"
    assert kinds[1] == "user"
    assert [k for k in KINDS if k in kinds] == sorted(set(kinds), key=KINDS.index)
    contents = {r["content"] for k, r in records if k == "memory"}
    assert contents == {"likes oolong tea", "old address"}
    assert {r["operation"] for k, r in records if k == "history"} >= {"update", "delete"}
    assert [r["content"] for k, r in records if k == "message"] == ["hello"]
    assert next(r for k, r in records if k == "summary")["content"] == "Alice likes tea."
    assert all("bob" not in str(r) for _, r in records)


def test_export_of_an_unknown_user_is_not_found(vault: MemVault) -> None:
    with pytest.raises(NotFoundError):
        list(vault.export_user("nobody"))


def test_context_follows_the_template(vault: MemVault) -> None:
    vault.save_summary("alice", "Alice is a nurse in Lisbon.")
    vault.add_user_fact("alice", "Allergic to peanuts", "health")
    vault.add("alice", "Planning a trip to Japan in May")
    vault.add_message("alice", "user", "hi")
    vault.add_message("alice", "assistant", "hello!")
    ctx = vault.context("alice", "Any snacks for my Japan trip?", system_prompt="You are AURA.")
    roles = [m.role for m in ctx.messages]
    assert roles == ["system", "system", "user", "assistant", "user"]
    memory = ctx.messages[1].content
    assert memory.startswith("User Memory: Alice is a nurse in Lisbon.\n\nRelevant memories:\n- ")
    assert "- Planning a trip to Japan in May (note)" in memory
    assert "- Allergic to peanuts (fact, health)" in memory
    assert ctx.messages[-1].content == "Any snacks for my Japan trip?"
    assert len(ctx.memory_ids) == 2
    assert ctx.token_estimate <= ctx.token_budget


def test_context_with_only_a_summary_is_seed_003s_message(vault: MemVault) -> None:
    vault.save_summary("carol", "Carol likes jazz.")
    ctx = vault.context("carol", "hello there")
    assert [m.model_dump() for m in ctx.messages] == [
        {"role": "system", "content": "User Memory: Carol likes jazz."},
        {"role": "user", "content": "hello there"},
    ]


def test_context_stays_within_the_budget(vault: MemVault) -> None:
    vault.save_summary("dave", "Dave. " * 50)
    vault.add_many("dave", [{"content": f"dave likes hiking trail number {i}"} for i in range(30)])
    for i in range(40):
        vault.add_message("dave", "user", f"message {i} about hiking " * 5)
    ctx = vault.context("dave", "which hiking trail?", token_budget=200, k=20)
    assert ctx.token_estimate <= 200
    assert ctx.messages[-1].content == "which hiking trail?"
    history = [m for m in ctx.messages if m.role == "user"][:-1]
    if history:  # the newest messages are the ones kept
        assert history[-1].content.startswith("message 39 ")


def test_context_of_a_new_user_is_just_the_message(vault: MemVault) -> None:
    ctx = vault.context("nobody-yet", "hi")
    assert [m.role for m in ctx.messages] == ["user"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"message": " "}, "message"),
        ({"message": "hi", "k": 0}, "k"),
        ({"message": "hi", "token_budget": 10}, "token_budget"),
        ({"message": "hi", "history_limit": 1000}, "history_limit"),
    ],
)
def test_context_rejects_bad_input(vault: MemVault, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        vault.context("alice", **kwargs)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_an_out_of_range_audit_position_is_invalid_not_a_crash(vault: MemVault) -> None:
    # Found by schemathesis: GET /v1/audit?after=<2**64> overflowed SQLite's integer.
    for bad in (2**64, -1):
        with pytest.raises(InvalidArgumentError):
            vault.audit_log(after=bad)


def test_processes_sharing_a_bucket_file_spend_one_budget(tmp_path: Path) -> None:
    """Two `SharedBuckets` on one file, as two workers of `memvault serve` map it."""
    path = tmp_path / "rate-limits"
    one, two = SharedBuckets(path), SharedBuckets(path)
    try:
        spent = [(one if i % 2 else two).take("key_a", 4, 100.0) for i in range(6)]
        assert spent[:4] == [0.0, 0.0, 0.0, 0.0]
        assert spent[4] == pytest.approx(15.0)  # 4 a minute: one more in 15 s
        assert one.take("key_b", 4, 100.0) == 0.0  # another key has its own bucket
        assert two.take("key_a", 4, 115.0) == 0.0  # refilled by one
        assert one.take("key_a", 4, 115.0) == pytest.approx(15.0)
    finally:
        one.close()
        two.close()


def test_a_full_bucket_table_falls_back_to_the_process_own(tmp_path: Path) -> None:
    class Tiny(SharedBuckets):
        SLOTS = 2
        PROBE = 2

    table = Tiny(tmp_path / "rate-limits")
    try:
        assert table.take("key_a", 2, 0.0) == 0.0
        assert table.take("key_b", 2, 0.0) == 0.0
        assert table.take("key_c", 2, 0.0) is None  # both slots hold unfinished buckets
        limiter = RateLimiter(table)
        limiter.take("key_c", 2)
        limiter.take("key_c", 2)
        with pytest.raises(RateLimitedError):
            limiter.take("key_c", 2)  # counted in this process meanwhile
        # A bucket refilled completely is as good as empty: its slot is taken over.
        assert table.take("key_d", 2, 61.0) == 0.0
    finally:
        table.close()
