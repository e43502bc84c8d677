"""Memory content and metadata encrypted at rest on SQLite and PostgreSQL
(docs/backends.md#encryption): what the database holds, what a missing or wrong key does,
what search still does, key rotation, and the way back to a plain store.

The raw rows are read with the database's own driver, as somebody holding only the
database file (or a dump) would."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from memvault import ConfigurationError, InvalidArgumentError, MemVault, Settings
from memvault.crypto import new_key
from memvault.errors import UnavailableError
from memvault.service import admin
from memvault.service.archive import parse_lines
from tests.conftest import PostgresDatabase

BACKENDS = ("sqlite", "postgres")

SECRET = "My locker code is 4921 and I keep it at the Riverside gym"
META = {"source": "chat", "private_note": "Zanzibar"}


def _sealed(settings: Settings, key: str, **extra: Any) -> Settings:
    return settings.model_copy(update={"encryption_key": key, "encrypt_content": True, **extra})


def _raw(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            return list(conn.execute(sql, params).fetchall())
    import psycopg

    with psycopg.connect(url) as conn:
        return list(conn.execute(sql.replace("?", "%s"), params).fetchall())


def _dump(settings: Settings) -> bytes:
    """Every memory and history column as bytes, to look for plaintext in."""
    rows = _raw(settings, "SELECT * FROM memories") + _raw(settings, "SELECT * FROM memory_history")
    return repr(rows).encode() + b"".join(
        bytes(v) for r in rows for v in r if isinstance(v, bytes | memoryview)
    )


def test_the_database_holds_no_content_or_metadata(settings: Settings) -> None:
    key = new_key()
    with MemVault(_sealed(settings, key)) as v:
        m = v.add("alice", SECRET, metadata=META, tags=["gym"], session_id="s1")
        v.update("alice", m.memory_id, content=SECRET + " (room 12)", actor="alice")
        obj = v.add("alice", {"pin": "4921", "place": "Zanzibar"}, key="card")
        got = v.get("alice", m.memory_id)
        assert got.content == SECRET + " (room 12)"
        assert got.metadata == META
        assert v.get("alice", obj.memory_id).content == {"pin": "4921", "place": "Zanzibar"}
        history = v.history("alice", m.memory_id)
        assert [h.snapshot["content"] for h in history] == [SECRET, SECRET + " (room 12)"]
        assert history[0].snapshot["metadata"] == META
    dump = _dump(settings)
    for word in (b"locker", b"4921", b"Riverside", b"Zanzibar", b"private_note"):
        assert word not in dump
    rows = _raw(
        settings,
        "SELECT content, content_object, metadata, enc_key, search_context, content_hash "
        "FROM memories",
    )
    plain_hash = hashlib.sha256(" ".join(SECRET.split()).casefold().encode()).hexdigest()
    for content, content_object, metadata, enc_key, context, digest in rows:
        assert (content, content_object, context) == ("", None, None)
        assert (json.loads(metadata) if isinstance(metadata, str) else metadata) == {}
        assert len(enc_key or "") == 16
        assert digest != plain_hash
    # Tags, keys and namespaces stay plain: they are what a sealed store filters by.
    assert b"gym" in dump
    assert b"card" in dump


def test_a_missing_or_wrong_key_stops_the_open_and_writes_nothing(settings: Settings) -> None:
    key = new_key()
    with MemVault(_sealed(settings, key)) as v:
        v.add("alice", SECRET, metadata=META)
    before = _raw(settings, "SELECT * FROM encryption_check"), _dump(settings)
    with pytest.raises(ConfigurationError, match="encrypts memory content"):
        MemVault(settings)  # no key at all
    with pytest.raises(ConfigurationError, match="not the configured key"):
        MemVault(_sealed(settings, new_key()))
    with pytest.raises(ConfigurationError, match="not the configured key"):
        MemVault(settings.model_copy(update={"encryption_key": new_key()}))
    assert (_raw(settings, "SELECT * FROM encryption_check"), _dump(settings)) == before
    # The right key, even without the setting, opens it and keeps sealing.
    with MemVault(settings.model_copy(update={"encryption_key": key})) as v:
        assert v.get_user("alice")
        v.add("alice", "Second secret about Zanzibar")
    assert b"Zanzibar" not in _dump(settings)


def test_encrypting_without_a_key_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="no key is configured"):
        MemVault(settings.model_copy(update={"encrypt_content": True}))
    assert _raw(settings, "SELECT count(*) FROM encryption_check") == [(0,)]


def test_search_runs_on_vectors_and_says_why_keywords_are_off(settings: Settings) -> None:
    with MemVault(_sealed(settings, new_key())) as v:
        v.add("alice", "I adopted a grey cat called Miso last spring", metadata={"k": 1})
        v.add("alice", "My favourite programming language is Rust", metadata={"k": 2})
        v.add("alice", "I go climbing every Thursday evening", metadata={"k": 3})
        hits = v.search("alice", "what pet does she have?")
        assert "Miso" in hits[0].memory.text
        assert hits[0].memory.metadata == {"k": 1}
        assert v.search("alice", "what pet?", mode="vector")[0].memory.metadata == {"k": 1}
        with pytest.raises(InvalidArgumentError) as exc:
            v.search("alice", "cat", mode="lexical")
        assert exc.value.details == {"reason": "content_encrypted"}
        with pytest.raises(InvalidArgumentError) as exc:
            v.search("alice", "cat", filters={"metadata": {"k": 1}})
        assert exc.value.details == {"reason": "content_encrypted"}


def test_listing_filters_by_metadata_page_by_page(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memvault.storage.sql import backend as sql_backend

    monkeypatch.setattr(sql_backend, "_SEALED_PAGE", 4)  # several pages per listing
    with MemVault(_sealed(settings, new_key())) as v:
        for i in range(30):
            v.add("alice", f"note {i}", metadata={"n": i, "even": i % 2 == 0, "tag": f"t{i % 3}"})
        v.add("bob", "note of bob", metadata={"n": 4, "even": True})
        seen: list[int] = []
        cursor = None
        while True:
            page = v.list_memories(
                "alice",
                filters={"metadata": {"even": True, "n": {"gte": 6}}},
                order="created_asc",
                limit=4,
                cursor=cursor,
            )
            seen += [m.metadata["n"] for m in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == list(range(6, 30, 2))
        got = v.list_memories("alice", filters={"metadata": {"tag": "t1", "missing": None}})
        assert sorted(m.metadata["n"] for m in got.items) == list(range(1, 30, 3))


def test_exact_duplicates_are_found_under_keyed_hashes(settings: Settings) -> None:
    with MemVault(_sealed(settings, new_key())) as v:
        first = v.add_user_fact("alice", "Allergic to peanuts", "health")
        again = v.add_user_fact("alice", "  allergic to PEANUTS ", "health")
        assert again.memory_id == first.memory_id
        assert len(v.get_user_facts("alice")) == 1


def test_a_changed_or_moved_ciphertext_is_refused(settings: Settings) -> None:
    key = new_key()
    with MemVault(_sealed(settings, key)) as v:
        a = v.add("alice", "first secret")
        b = v.add("alice", "second secret")
    blob = _raw(settings, "SELECT content_z FROM memories WHERE memory_id = ?", (a.memory_id,))
    _exec(
        settings, "UPDATE memories SET content_z = ? WHERE memory_id = ?", (blob[0][0], b.memory_id)
    )
    with MemVault(_sealed(settings, key)) as v:
        assert v.get("alice", a.memory_id).content == "first secret"
        with pytest.raises(UnavailableError, match="does not decrypt"):
            v.get("alice", b.memory_id)


def _exec(settings: Settings, sql: str, params: tuple[Any, ...]) -> None:
    url = settings.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            conn.execute(sql, params)
        return
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(sql.replace("?", "%s"), params)


def test_rotation_seals_old_plain_rows_then_moves_to_a_new_key(settings: Settings) -> None:
    with MemVault(settings) as v:  # a plain store with history
        m = v.add("alice", "Plain secret about Zanzibar", metadata={"where": "Zanzibar"})
        v.update("alice", m.memory_id, content="Plain secret about Zanzibar, edited", actor="a")
    key = new_key()
    with MemVault(_sealed(settings, key)) as v:  # starts encrypting: new rows only
        v.add("alice", "Sealed from the start")
        assert v.get("alice", m.memory_id).metadata == {"where": "Zanzibar"}
        with pytest.raises(InvalidArgumentError):
            v.search("alice", "Zanzibar", mode="lexical")
    assert b"Zanzibar" in _dump(settings)
    done = admin.rotate_encryption_key(_sealed(settings, key), key)
    assert done == {"memories": 1, "snapshots": 1}
    assert b"Zanzibar" not in _dump(settings)
    if settings.database_url.startswith("sqlite"):  # nothing left in the full-text index
        path = settings.database_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            assert conn.execute(
                "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'zanzibar'"
            ).fetchone() == (0,)
    # To a new key: before the rotation the new key alone cannot open the store.
    new = new_key()
    with pytest.raises(ConfigurationError):
        MemVault(_sealed(settings, new))
    done = admin.rotate_encryption_key(_sealed(settings, key), new)
    assert done == {"memories": 2, "snapshots": 1}
    ids = {r[0] for r in _raw(settings, "SELECT enc_key FROM memories")}
    assert len(ids) == 1
    with MemVault(_sealed(settings, new)) as v:
        assert v.get("alice", m.memory_id).content == "Plain secret about Zanzibar, edited"
        assert v.history("alice", m.memory_id)[0].snapshot["metadata"] == {"where": "Zanzibar"}
        assert v.count("alice") == 2
    with pytest.raises(ConfigurationError):
        MemVault(_sealed(settings, key))  # the old key alone no longer opens it
    # An interrupted rotation is finished by running it again; nothing is left to do now.
    assert admin.rotate_encryption_key(_sealed(settings, new), new) == {
        "memories": 0,
        "snapshots": 0,
    }


def test_rotation_refuses_a_store_that_does_not_encrypt(settings: Settings) -> None:
    with MemVault(settings) as v:
        v.add("alice", "plain")
    with pytest.raises(InvalidArgumentError, match="does not encrypt"):
        admin.rotate_encryption_key(
            settings.model_copy(update={"encryption_key": new_key()}), new_key()
        )


def test_export_then_import_into_a_plain_store_turns_encryption_off(
    settings: Settings, tmp_path: Path
) -> None:
    key = new_key()
    with MemVault(_sealed(settings, key)) as v:
        m = v.add("alice", SECRET, metadata=META, tags=["gym"])
        v.update("alice", m.memory_id, importance=0.9, actor="alice")
        lines = [json.dumps({"kind": k, "record": r}) for k, r in v.export_all()]
    plain = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'plain.db'}")
    with MemVault(plain) as v:
        v.import_archive(parse_lines(lines))
        got = v.get("alice", m.memory_id)
        assert (got.content, got.metadata, got.importance) == (SECRET, META, 0.9)
        assert [h.version for h in v.history("alice", m.memory_id)] == [1, 2]
        assert v.search("alice", "locker code", mode="lexical")[0].memory.memory_id == m.memory_id


@pytest.mark.postgres
def test_a_sealed_store_migrates_between_sqlite_and_postgres(
    postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    from memvault.errors import ConflictError

    key = new_key()
    pg = Settings(data_dir=tmp_path, database_url=postgres_db.fresh())
    source = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'first.db'}",
        encryption_key=key,
        encrypt_content=True,
    )
    with MemVault(source) as v:
        m = v.add("alice", SECRET, metadata=META)
        v.update("alice", m.memory_id, importance=0.3, actor="alice")
    # The target opens encrypting under the same key: its own check row gives way.
    report = admin.transfer_store(source, source.database_url, pg.database_url)
    assert report.verified, report
    assert b"Zanzibar" not in _dump(pg)
    with MemVault(_sealed(pg, key)) as v:
        assert v.get("alice", m.memory_id).metadata == META
        assert v.history("alice", m.memory_id)[0].snapshot["content"] == SECRET
    with pytest.raises(ConfigurationError):
        MemVault(pg)
    # Into a store sealing under another key, nothing is copied.
    other_key = new_key()
    other = source.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'other.db'}", "encryption_key": other_key}
    )
    MemVault(other).close()
    both = source.model_copy(update={"encryption_old_keys": other_key})
    with pytest.raises(ConflictError, match="another"):
        admin.transfer_store(both, source.database_url, other.database_url)
