"""Every public method rejects bad input with a stable error and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from memvault import (
    ErrorCode,
    InvalidArgumentError,
    MemVault,
    MemvaultError,
    NotFoundError,
    PayloadTooLargeError,
    limits,
)

NAIVE = datetime(2030, 1, 1)  # noqa: DTZ001 - the point of the test
BIG = "x" * (limits.MAX_CONTENT_CHARS + 1)
MID = "mem_01M80KV438AF5YEFGMR5GX80RV"

Call = Callable[[MemVault], Any]

CASES: list[tuple[str, Call, ErrorCode]] = [
    ("empty content", lambda v: v.add("alice", ""), ErrorCode.INVALID_ARGUMENT),
    ("blank content", lambda v: v.add("alice", "  \n"), ErrorCode.INVALID_ARGUMENT),
    ("content not text", lambda v: v.add("alice", 42), ErrorCode.INVALID_ARGUMENT),
    ("oversized content", lambda v: v.add("alice", BIG), ErrorCode.PAYLOAD_TOO_LARGE),
    ("NUL in content", lambda v: v.add("alice", "a\x00b"), ErrorCode.INVALID_ARGUMENT),
    ("lone surrogate in content", lambda v: v.add("alice", "a\ud800b"), ErrorCode.INVALID_ARGUMENT),
    (
        "lone surrogate in metadata",
        lambda v: v.add("alice", "x", metadata={"k": "a\udfffb"}),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("importance > 1", lambda v: v.add("alice", "x", importance=1.5), ErrorCode.INVALID_ARGUMENT),
    ("importance < 0", lambda v: v.add("alice", "x", importance=-0.1), ErrorCode.INVALID_ARGUMENT),
    (
        "importance NaN",
        lambda v: v.add("alice", "x", importance=float("nan")),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "importance text",
        lambda v: v.add("alice", "x", importance="high"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "bad namespace",
        lambda v: v.add("alice", "x", namespace="../etc"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("empty namespace", lambda v: v.add("alice", "x", namespace=""), ErrorCode.INVALID_ARGUMENT),
    ("key too long", lambda v: v.add("alice", "x", key="k" * 300), ErrorCode.INVALID_ARGUMENT),
    ("key control char", lambda v: v.add("alice", "x", key="a\nb"), ErrorCode.INVALID_ARGUMENT),
    (
        "bad type",
        lambda v: v.add("alice", "x", memory_type="Not A Type"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "too many tags",
        lambda v: v.add("alice", "x", tags=[f"t{i}" for i in range(65)]),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    ("tag too long", lambda v: v.add("alice", "x", tags=["t" * 65]), ErrorCode.PAYLOAD_TOO_LARGE),
    ("tag not text", lambda v: v.add("alice", "x", tags=[1]), ErrorCode.INVALID_ARGUMENT),
    ("tags not a list", lambda v: v.add("alice", "x", tags="abc"), ErrorCode.INVALID_ARGUMENT),
    (
        "metadata too big",
        lambda v: v.add("alice", "x", metadata={"a": "b" * 20_000}),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    (
        "metadata too deep",
        lambda v: v.add(
            "alice", "x", metadata={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}
        ),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "metadata not JSON",
        lambda v: v.add("alice", "x", metadata={"a": object()}),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "naive expires_at",
        lambda v: v.add("alice", "x", expires_at=NAIVE),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("ttl zero", lambda v: v.add("alice", "x", ttl_seconds=0), ErrorCode.INVALID_ARGUMENT),
    (
        "ttl and expiry",
        lambda v: v.add(
            "alice",
            "x",
            ttl_seconds=5,
            expires_at=datetime.fromisoformat("2099-01-01T00:00:00+00:00"),
        ),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "expiry in the past",
        lambda v: v.add(
            "alice", "x", expires_at=datetime.fromisoformat("2000-01-01T00:00:00+00:00")
        ),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("empty user", lambda v: v.add("", "x"), ErrorCode.INVALID_ARGUMENT),
    ("user not text", lambda v: v.add(None, "x"), ErrorCode.INVALID_ARGUMENT),
    ("user too long", lambda v: v.add("u" * 200, "x"), ErrorCode.INVALID_ARGUMENT),
    ("malformed id", lambda v: v.get("alice", "42"), ErrorCode.INVALID_ARGUMENT),
    (
        "session id as memory id",
        lambda v: v.get("alice", "ses_01M80KV438AF5YEFGMR5GX80RV"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("unknown id", lambda v: v.get("alice", MID), ErrorCode.NOT_FOUND),
    ("update nothing", lambda v: v.update("alice", MID), ErrorCode.INVALID_ARGUMENT),
    (
        "update null content",
        lambda v: v.update("alice", MID, content=None),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "update unknown field",
        lambda v: v.update("alice", MID, colour="red"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "update bad version",
        lambda v: v.update("alice", MID, content="x", expected_version=0),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("batch empty", lambda v: v.add_many("alice", []), ErrorCode.INVALID_ARGUMENT),
    (
        "batch too big",
        lambda v: v.add_many("alice", [{"content": "x"}] * 1001),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    ("batch not list", lambda v: v.add_many("alice", "abc"), ErrorCode.INVALID_ARGUMENT),
    ("batch get too big", lambda v: v.get_many("alice", [MID] * 1001), ErrorCode.PAYLOAD_TOO_LARGE),
    (
        "list unknown filter",
        lambda v: v.list_memories("alice", filters={"colour": "red"}),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "list bad order",
        lambda v: v.list_memories("alice", order="random"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("list limit 0", lambda v: v.list_memories("alice", limit=0), ErrorCode.INVALID_ARGUMENT),
    ("list limit huge", lambda v: v.list_memories("alice", limit=5000), ErrorCode.INVALID_ARGUMENT),
    (
        "list naive time",
        lambda v: v.list_memories("alice", filters={"created_after": NAIVE}),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "list reversed range",
        lambda v: v.list_memories(
            "alice",
            filters={
                "created_after": "2030-01-02T00:00:00Z",
                "created_before": "2030-01-01T00:00:00Z",
            },
        ),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "list nested metadata filter",
        lambda v: v.list_memories("alice", filters={"metadata": {"a": [1]}}),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("search empty", lambda v: v.search("alice", "  "), ErrorCode.INVALID_ARGUMENT),
    ("search k 0", lambda v: v.search("alice", "tea", k=0), ErrorCode.INVALID_ARGUMENT),
    ("search k 101", lambda v: v.search("alice", "tea", k=101), ErrorCode.INVALID_ARGUMENT),
    ("search huge", lambda v: v.search("alice", "tea " * 2000), ErrorCode.INVALID_ARGUMENT),
    (
        "message bad role",
        lambda v: v.add_message("alice", "robot", "hi"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("message empty", lambda v: v.add_message("alice", "user", ""), ErrorCode.INVALID_ARGUMENT),
    (
        "message oversized",
        lambda v: v.add_message("alice", "user", BIG),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    (
        "fact bad importance",
        lambda v: v.add_user_fact("alice", "x", importance="high"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "fact metadata not object",
        lambda v: v.add_user_fact("alice", "x", metadata="abc"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "message metadata not object",
        lambda v: v.add_message("alice", "user", "hi", metadata="ab"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "profile not object",
        lambda v: v.update_user("alice", profile=["a"]),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "session metadata not object",
        lambda v: v.create_session("alice", metadata="ab"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    ("search k not int", lambda v: v.search("alice", "tea", k="5"), ErrorCode.INVALID_ARGUMENT),
    ("fact empty", lambda v: v.add_user_fact("alice", ""), ErrorCode.INVALID_ARGUMENT),
    ("summary empty", lambda v: v.save_summary("alice", ""), ErrorCode.INVALID_ARGUMENT),
    (
        "bad timezone",
        lambda v: v.update_user("alice", timezone="Mars/Olympus"),
        ErrorCode.INVALID_ARGUMENT,
    ),
    (
        "profile too big",
        lambda v: v.update_user("alice", profile={"a": "b" * 20_000}),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    ("unknown user read", lambda v: v.get_user("nobody"), ErrorCode.NOT_FOUND),
    ("bad session id", lambda v: v.get_session("alice", "s1"), ErrorCode.INVALID_ARGUMENT),
    (
        "global value too big",
        lambda v: v.set_global_context("k", "x" * 70_000),
        ErrorCode.PAYLOAD_TOO_LARGE,
    ),
    ("history unknown", lambda v: v.history("alice", MID), ErrorCode.NOT_FOUND),
    (
        "restore live",
        lambda v: v.restore("alice", v.list_memories("alice").items[0].memory_id),
        ErrorCode.CONFLICT,
    ),
]


@pytest.mark.parametrize(("name", "call", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_changes_nothing(
    vault: MemVault, name: str, call: Call, code: ErrorCode
) -> None:
    existing = vault.add("alice", "existing memory", key="existing", tags=["t"])
    vault.add_message("alice", "user", "hello")
    before = (
        vault.list_memories("alice").items,
        vault.get_message_history("alice"),
        vault.get_global_context(),
    )
    with pytest.raises(MemvaultError) as info:
        call(vault)
    assert info.value.code is code, info.value
    assert info.value.message
    after = (
        vault.list_memories("alice").items,
        vault.get_message_history("alice"),
        vault.get_global_context(),
    )
    assert [m.model_dump(exclude={"access_count", "last_accessed_at"}) for m in after[0]] == [
        m.model_dump(exclude={"access_count", "last_accessed_at"}) for m in before[0]
    ]
    assert after[1:] == before[1:]
    assert vault.get("alice", existing.memory_id).content == "existing memory"


def test_error_messages_say_what_is_allowed(vault: MemVault) -> None:
    with pytest.raises(InvalidArgumentError, match=r"importance must be in \[0, 1\], got 1.5"):
        vault.add("alice", "x", importance=1.5)
    with pytest.raises(PayloadTooLargeError, match="the limit is 65536"):
        vault.add("alice", BIG)


def test_deleted_id_is_not_found(vault: MemVault) -> None:
    m = vault.add("alice", "x")
    vault.delete("alice", m.memory_id)
    with pytest.raises(NotFoundError):
        vault.update("alice", m.memory_id, content="y")


def test_an_embedding_past_float32_range_is_refused_not_a_crash(vault: MemVault) -> None:
    # Found by schemathesis: under warnings-as-errors the float32 cast's overflow warning
    # had escaped as an exception (a 500 over REST).
    with pytest.raises(InvalidArgumentError):
        vault.add("alice", "x", embedding=[1e39] * 384)
    big = vault.add("alice", "y", embedding=[1e20] * 384)  # large but finite: normalised
    assert big.content == "y"


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_out_of_range_in_utc_is_refused_not_a_crash(vault: MemVault, when: str) -> None:
    # Found by schemathesis: converting these to UTC overflowed (a 500 over REST).
    with pytest.raises(InvalidArgumentError):
        vault.add("alice", "x", expires_at=datetime.fromisoformat(when))
    with pytest.raises(InvalidArgumentError):
        vault.list_memories("alice", filters={"created_after": when})
