"""Archives: export -> import into an empty store of each backend yields the same store;
importing again adds nothing; bad archives are refused with the line that is wrong."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.errors import InvalidArgumentError, PermissionDeniedError
from memvault.service.archive import parse_lines


def _rich_store(path: Path) -> list[str]:
    """A SQLite store holding a bit of everything; returns its archive's lines."""
    clock = FrozenClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    s = Settings(data_dir=path, database_url=f"sqlite:///{path / 'src.db'}", job_worker=False)
    with MemVault(s, clock=clock) as v:
        v.get_or_create_user("alice", "Alice")
        v.update_user("alice", timezone="Europe/Lisbon", profile={"lang": "pt", "n": 1})
        a = v.add("alice", "Prefers green tea", tags=["drinks"], metadata={"cups": 2})
        v.add("alice", {"text": "object content", "extra": [1, 2]}, namespace="notes", key="k1")
        clock.advance(60)
        v.update("alice", a.memory_id, content="Prefers oolong tea")
        v.update("alice", a.memory_id, importance=0.9)
        gone = v.add("alice", "to be deleted")
        v.delete("alice", gone.memory_id)
        v.add("alice", "short lived", ttl_seconds=5)
        clock.advance(3600)
        for _ in range(3):
            v.get("alice", a.memory_id)
        v.flush()
        ses = v.create_session("alice", metadata={"topic": "tea"})
        v.add_message("alice", "user", "I live in Paris.", session_id=ses.session_id, extract=True)
        v.add_message("alice", "assistant", "Noted.")
        v.run_jobs()
        clock.advance(86400)
        v.add_message("alice", "user", "I moved to Lyon.", extract=True)
        v.run_jobs()
        v.end_session("alice", ses.session_id)
        v.update_streak("alice", today=date(2026, 1, 6))
        v.increment_metric("alice", "logins", 3)
        v.save_summary("alice", "Alice likes tea.")
        v.add_user_fact("bob", "Plays chess", "hobbies")
        v.add_permanent_memory("bob", "Never call before 9")
        v.set_global_context("tone", {"style": "warm"})
        return [json.dumps({"kind": k, "record": r}) for k, r in v.export_all()]


def _records(lines: list[str]) -> list[dict[str, Any]]:
    """An archive's records without what is local to a store: the export time and history
    row numbers."""
    out = []
    for line in lines[1:]:
        obj = json.loads(line)
        obj["record"].pop("history_id", None)
        out.append(obj)
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _rich_store(tmp_path_factory.mktemp("src"))


def test_an_archive_restores_the_same_store(
    archive: list[str], settings: Settings, clock: FrozenClock
) -> None:
    kinds = {json.loads(line)["kind"] for line in archive}
    assert kinds == {
        "header",
        "user",
        "memory",
        "history",
        "message",
        "session",
        "summary",
        "metrics",
        "global_context",
    }
    with MemVault(settings.model_copy(update={"job_worker": False}), clock=clock) as v:
        report = v.import_archive(parse_lines(archive))
        assert report.scope == "all"
        assert report.counts["memory"] == {"imported": 8}
        assert report.counts["user"] == {"imported": 2}
        again = [json.dumps({"kind": k, "record": r}) for k, r in v.export_all()]
        assert _records(again) == _records(archive)
        # A second import adds nothing and changes nothing.
        second = v.import_archive(parse_lines(archive))
        assert all(set(c) == {"exists"} for c in second.counts.values()), second.counts
        assert _records([json.dumps({"kind": k, "record": r}) for k, r in v.export_all()]) == (
            _records(archive)
        )
        # Searchable at once: vectors and the full-text index came with the import.
        assert report.embedded >= 1
        hits = v.search("alice", "which tea does she like", k=1)
        assert str(hits[0].memory.content) == "Prefers oolong tea"
        assert [m.content for m in v.get_user_facts("alice")] == ["Lives in Lyon"]


def test_a_dry_run_writes_nothing(archive: list[str], settings: Settings) -> None:
    with MemVault(settings.model_copy(update={"job_worker": False})) as v:
        report = v.import_archive(parse_lines(archive), dry_run=True)
        assert report.dry_run
        assert report.counts["memory"] == {"imported": 8}
        assert v.list_users() == []
        assert v.get_global_context() == {}


def test_existing_records_are_never_overwritten(archive: list[str], settings: Settings) -> None:
    with MemVault(settings.model_copy(update={"job_worker": False})) as v:
        v.save_summary("alice", "A newer summary")
        v.add("alice", "a live memory", namespace="notes", key="k1")  # the archive's key
        report = v.import_archive(parse_lines(archive))
        assert report.counts["summary"] == {"exists": 1}
        assert report.counts["memory"]["key_taken"] == 1
        assert v.get_summary("alice").content == "A newer summary"  # type: ignore[union-attr]


def test_one_users_import(archive: list[str], settings: Settings) -> None:
    alice_only = [archive[0]] + [
        line
        for line in archive[1:]
        if json.loads(line)["record"].get("user_id") == "alice"
        and json.loads(line)["kind"] != "global_context"
    ]
    with MemVault(settings.model_copy(update={"job_worker": False})) as v:
        report = v.import_archive(parse_lines(alice_only), user_id="alice")
        assert report.counts["user"] == {"imported": 1}
        with pytest.raises(PermissionDeniedError):
            v.import_archive(parse_lines(archive), user_id="alice")  # bob's records in it


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        ([], 1, "empty"),
        (['{"kind": "memory", "record": {}}'], 1, "header"),
        (
            ['{"kind": "header", "record": {"format": "memvault-export", "version": 9}}'],
            1,
            "version",
        ),
        (["HEADER", "{oops"], 2, "not JSON"),
        (["HEADER", '{"kind": "memory"}'], 2, "each line"),
        (["HEADER", '{"kind": "spell", "record": {}}'], 2, "unknown record kind"),
        (["HEADER", '{"kind": "memory", "record": {"memory_id": "x"}}'], 2, "user_id"),
        (["HEADER", "HEADER"], 2, "second header"),
    ],
)
def test_bad_archives_name_their_line(
    settings: Settings, lines: list[str], line: int, message: str
) -> None:
    header = json.dumps(
        {"kind": "header", "record": {"format": "memvault-export", "version": 2, "scope": "all"}}
    )
    lines = [header if x == "HEADER" else x for x in lines]
    with MemVault(settings) as v:
        with pytest.raises(InvalidArgumentError) as err:
            v.import_archive(parse_lines(lines))
        assert err.value.details["line"] == line
        assert message in str(err.value)


def test_records_are_checked_like_writes(archive: list[str], settings: Settings) -> None:
    memory = next(json.loads(x) for x in archive if json.loads(x)["kind"] == "memory")
    for change in (
        {"content": "x" * 70_000},
        {"memory_id": "nope"},
        {"namespace": "../etc"},
        {"created_at": "2026-01-01T00:00:00"},  # no offset
        {"tags": ["ok", 3]},
        {"session_id": "s" * 500},
        {"category": "bad\ncategory"},
        {"valid_from": "2026-02-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"},
    ):
        bad = {"kind": "memory", "record": {**memory["record"], **change}}
        with MemVault(settings) as v, pytest.raises(InvalidArgumentError) as err:
            v.import_archive(parse_lines([archive[0], json.dumps(bad)]))
        assert err.value.details["line"] == 2, change


async def test_rest_export_and_import_of_one_user(
    archive: list[str], settings: Settings, tmp_path: Path
) -> None:
    import httpx

    from memvault import AsyncMemVault
    from memvault.api import create_app

    src = await AsyncMemVault.open(settings.model_copy(update={"job_worker": False}))
    dst_settings = Settings(
        data_dir=tmp_path / "dst", database_url=f"sqlite:///{tmp_path / 'dst.db'}", job_worker=False
    )
    dst = await AsyncMemVault.open(dst_settings)
    try:
        await src.import_archive(parse_lines(archive))
        _, alice_src = await src.create_api_key("alice")
        _, alice_dst = await dst.create_api_key("alice")
        _, bob_dst = await dst.create_api_key("bob")
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(vault=src)), base_url="http://s"
            ) as s,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(vault=dst)), base_url="http://d"
            ) as d,
        ):
            r = await s.get(
                "/v1/users/me/export",
                params={"format": "jsonl"},
                headers={"Authorization": f"Bearer {alice_src}"},
            )
            body = r.content
            h = {"Authorization": f"Bearer {alice_dst}", "Content-Type": "application/x-ndjson"}
            r = await d.post(
                "/v1/users/me/import", params={"dry_run": True}, content=body, headers=h
            )
            assert r.json()["dry_run"] is True
            assert (await dst.count("alice")) == 0
            r = await d.post("/v1/users/me/import", content=body, headers=h)
            assert r.status_code == 200, r.text
            assert r.json()["counts"]["memory"] == {"imported": 6}
            r = await d.post("/v1/users/me/import", content=body, headers=h)
            assert r.json()["counts"]["memory"] == {"exists": 6}
            bob = {**h, "Authorization": f"Bearer {bob_dst}"}
            r = await d.post("/v1/users/me/import", content=body, headers=bob)
            assert r.status_code == 403
            assert r.json()["error"]["code"] == "PERMISSION_DENIED"
            r = await d.post("/v1/users/me/import", content=b"garbage", headers=h)
            assert r.status_code == 400
            assert r.json()["error"]["details"]["line"] == 1
    finally:
        await src.close()
        await dst.close()
