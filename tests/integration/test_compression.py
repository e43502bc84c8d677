"""Large contents are stored compressed on every backend and read back whole."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

from memvault import MemVault, Settings, limits

WORDS = [
    "tea",
    "lisbon",
    "violin",
    "garden",
    "river",
    "harbour",
    "lantern",
    "copper",
    "meadow",
    "orbit",
]


def _big(seed: int, n: int = 40_000) -> str:
    rng = random.Random(seed)
    text = " ".join(rng.choice(WORDS) for _ in range(n // 6))
    return ("Opening words about a blue heron. " + text)[:n] + " closing-marker"


def _stored(settings: Settings) -> list[tuple[int, int | None]]:
    """(length of the content column, bytes of the compressed one) of every memory row."""
    url = settings.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT length(content), length(content_z) FROM memories")
            return [(a, b) for a, b in rows]
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT length(content), length(content_z) FROM memories")
            return [(a, b) for a, b in rows]
    return []


def test_large_contents_round_trip_compressed(vault: MemVault, settings: Settings) -> None:
    big, obj_text = _big(1), _big(2)
    m = vault.add("u", big)
    o = vault.add("u", {"text": obj_text, "n": 1})
    small = vault.add("u", "a short note")
    assert vault.get("u", m.memory_id).content == big
    assert vault.get("u", o.memory_id).content == {"text": obj_text, "n": 1}
    changed = vault.update("u", m.memory_id, content=big + " appended")
    assert vault.get("u", m.memory_id).content == big + " appended"
    assert changed.version == 2
    assert vault.history("u", m.memory_id)[0].snapshot["content"] == big
    assert [p.memory.content for p in vault.search("u", "blue heron", mode="lexical")][:1] == [
        big + " appended"
    ]
    page = vault.list_memories("u", order="created_asc").items
    assert [x.memory_id for x in page] == [m.memory_id, o.memory_id, small.memory_id]
    assert page[0].content == big + " appended"
    rows = _stored(settings)
    if rows:  # the SQL backends: the beginning in `content`, the whole compressed
        compressed = sorted(r for r in rows if r[1] is not None)
        assert len(compressed) == 2
        assert all(r[0] == limits.COMPRESS_CONTENT_FROM for r in compressed)
        assert all(r[1] < len(big) / 2 for r in compressed)
        assert (len("a short note"), None) in rows


def test_jsonfs_compresses_its_own_big_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    s = Settings(data_dir=tmp_path, database_url=f"jsonfs://{root}", job_worker=False)
    with MemVault(s) as v:
        for i in range(4):
            v.add("alice", _big(i))
        v.add_user_fact("alice", "Lives in Lisbon", "location")
    folder = root / "alice"
    assert (folder / "memories.json").read_bytes().startswith(b"MVZ1\n")
    json.loads((folder / "user_facts.json").read_bytes())  # seed 002's files stay plain JSON
    with MemVault(s) as v:
        assert sorted(len(str(m.content)) for m in v.list_memories("alice").items)[-1] > 40_000
