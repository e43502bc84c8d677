"""The `memvault` command in a subprocess, on a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memvault.storage import migrate


def run(
    tmp_path: Path, *args: str, input_text: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MEMVAULT_DATA_DIR=str(tmp_path), COLUMNS="200", **extra_env)
    env.pop("MEMVAULT_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "memvault", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        input=input_text,
        check=False,
    )


def test_demo_stores_lists_and_searches(tmp_path: Path) -> None:
    r = run(tmp_path, "demo")
    assert r.returncode == 0, r.stderr
    assert "peanuts" in r.stdout
    assert "Lisbon" in r.stdout
    assert (tmp_path / "memvault.db").exists()
    assert run(tmp_path, "demo").returncode == 0  # idempotent


def test_add_get_update_history_delete_restore(tmp_path: Path) -> None:
    r = run(tmp_path, "add", "alice", "green tea at night", "--tag", "drinks", "--json")
    assert r.returncode == 0, r.stderr
    mid = json.loads(r.stdout)["memory_id"]
    got = json.loads(run(tmp_path, "get", "alice", mid).stdout)
    assert got["content"] == "green tea at night"
    assert got["tags"] == ["drinks"]
    assert (
        run(tmp_path, "update", "alice", mid, "--content", "oolong", "--if-version", "1").returncode
        == 0
    )
    assert (
        run(tmp_path, "update", "alice", mid, "--content", "x", "--if-version", "1").returncode == 4
    )
    hist = json.loads(run(tmp_path, "history", "alice", mid, "--json").stdout)
    assert [h["operation"] for h in hist] == ["create", "update"]
    assert run(tmp_path, "delete", "alice", mid).returncode == 0
    assert run(tmp_path, "get", "alice", mid).returncode == 3
    assert run(tmp_path, "restore", "alice", mid).returncode == 0
    listed = json.loads(run(tmp_path, "list", "alice", "--json").stdout)
    assert [m["memory_id"] for m in listed["items"]] == [mid]
    hits = json.loads(run(tmp_path, "search", "alice", "oolong", "--json").stdout)
    assert hits[0]["memory"]["memory_id"] == mid


@pytest.mark.parametrize(
    ("args", "code", "word"),
    [
        (("add", "alice", ""), 2, "INVALID_ARGUMENT"),
        (("add", "alice", "x", "--importance", "2"), 2, "importance must be in [0, 1]"),
        (("get", "alice", "mem_01M80KV438AF5YEFGMR5GX80RV"), 3, "NOT_FOUND"),
        (("list", "nobody"), 3, "NOT_FOUND"),
        (("search", "alice", "   "), 2, "INVALID_ARGUMENT"),
        (("db", "sql", "--dialect", "oracle"), 2, "INVALID_ARGUMENT"),
    ],
)
def test_errors_exit_with_their_code(
    tmp_path: Path, args: tuple[str, ...], code: int, word: str
) -> None:
    r = run(tmp_path, *args)
    assert r.returncode == code
    assert word in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr


def test_bad_setting_is_a_configuration_error(tmp_path: Path) -> None:
    env = dict(os.environ, MEMVAULT_MAX_MESSAGES="-1", MEMVAULT_DATA_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "memvault", "list", "a"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 9
    assert "max_messages" in r.stderr.lower()


def test_purge_and_erase_user(tmp_path: Path) -> None:
    run(tmp_path, "add", "alice", "x", "--ttl", "1")
    r = run(tmp_path, "purge", "--user", "alice", "--yes")
    assert r.returncode == 0
    assert "erased user alice" in r.stdout
    assert run(tmp_path, "purge").returncode == 0


def test_db_commands(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "db", "current").stdout.strip() == migrate.HEAD_REVISION
    sql = run(tmp_path, "db", "sql", "--dialect", "postgresql").stdout
    assert "CREATE TABLE memories" in sql


def test_search_and_reindex(tmp_path: Path) -> None:
    added = run(
        tmp_path,
        "add",
        "alice",
        "Keeps a sourdough starter called Bubbles",
        MEMVAULT_EMBEDDER="none",
    )
    assert added.returncode == 0, added.stderr
    # written with no embedder: the default one fills the vector, then searches by meaning
    r = run(tmp_path, "reindex", "--missing")
    assert r.returncode == 0, r.stderr
    assert "embedded 1 memories with all-MiniLM-L6-v2" in r.stdout
    r = run(tmp_path, "reindex", "--lexical")
    assert r.returncode == 0, r.stderr
    assert "embedded 0 memories" in r.stdout
    assert "full-text index rebuilt over 1 rows" in r.stdout
    r = run(tmp_path, "search", "alice", "baking bread", "--mode", "vector")
    assert r.returncode == 0, r.stderr
    assert "Bubbles" in r.stdout
    assert "lexical" in r.stdout  # the explain columns
    r = run(tmp_path, "search", "alice", "sourdough", "--json", "--mode", "lexical")
    hits = json.loads(r.stdout)
    assert hits[0]["explain"]["lexical"] == 1.0
    assert run(tmp_path, "search", "alice", "x", "--mode", "fuzzy").returncode == 2
    assert run(tmp_path, "search", "alice", "   ").returncode == 2


def test_export_and_import(tmp_path: Path) -> None:
    run(tmp_path, "add", "alice", "likes tea")
    run(tmp_path, "add", "bob", "likes coffee")
    doc = json.loads(run(tmp_path, "export", "--user", "alice", "--format", "json").stdout)
    assert doc["format"] == "memvault-export"
    assert [m["content"] for m in doc["memories"]] == ["likes tea"]
    out = tmp_path / "alice.jsonl"
    r = run(tmp_path, "export", "--user", "alice", str(out))
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds[:3] == ["header", "user", "memory"]
    missing = tmp_path / "nobody.jsonl"
    r = run(tmp_path, "export", "--user", "nobody", str(missing))
    assert r.returncode == 3  # NOT_FOUND
    assert not missing.exists()
    assert run(tmp_path, "export", "--user", "alice", "--format", "xml").returncode == 2
    assert run(tmp_path, "export", "--format", "json").returncode == 2  # all: jsonl only
    everything = tmp_path / "all.jsonl"
    assert run(tmp_path, "export", str(everything)).returncode == 0
    # Into an empty store: a dry run writes nothing, the import everything, again nothing.
    other = tmp_path / "other"
    r = run(other, "import", str(everything), "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["memory"] == {"imported": 2}
    assert run(other, "users").stdout.count("alice") == 0
    r = run(other, "import", str(everything))
    assert r.returncode == 0, r.stderr
    assert "memory: 2 imported" in r.stdout
    r = run(other, "import", str(everything), "--json")
    assert json.loads(r.stdout)["counts"]["memory"] == {"exists": 2}
    assert (
        run(other, "export", "-").stdout.splitlines()[1:] == everything.read_text().splitlines()[1:]
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(everything.read_text().splitlines()[0] + "\n{not json\n")
    r = run(other, "import", str(bad))
    assert r.returncode == 2
    assert "line 2" in r.stderr
    assert run(other, "import", str(tmp_path / "absent.jsonl")).returncode == 3


def test_encrypted_sqlite_store_from_keygen_to_rotation(tmp_path: Path) -> None:
    key_file, new_file = tmp_path / "key", tmp_path / "new-key"
    assert run(tmp_path, "encryption", "keygen", "-o", str(key_file)).returncode == 0
    assert run(tmp_path, "encryption", "keygen", "-o", str(new_file)).returncode == 0
    sealed = {"MEMVAULT_ENCRYPTION_KEY_FILE": str(key_file), "MEMVAULT_ENCRYPT_CONTENT": "1"}
    r = run(tmp_path, "add", "alice", "my locker code is 4921", **sealed)
    assert r.returncode == 0, r.stderr
    assert b"4921" not in (tmp_path / "memvault.db").read_bytes()
    r = run(tmp_path, "list", "alice")
    assert r.returncode == 9  # no key given
    assert "encrypts memory content" in r.stderr
    r = run(tmp_path, "encryption", "rotate", "--new-key-file", str(new_file), **sealed)
    assert r.returncode == 0, r.stderr
    assert "1 memories" in r.stdout
    r = run(tmp_path, "list", "alice", MEMVAULT_ENCRYPTION_KEY_FILE=str(new_file))
    assert r.returncode == 0, r.stderr
    assert "4921" in r.stdout
    r = run(tmp_path, "search", "alice", "locker", "--mode", "lexical", **sealed)
    assert r.returncode == 9, r.stdout  # the old key no longer opens the store
