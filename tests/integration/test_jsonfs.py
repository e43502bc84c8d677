"""The JSON-file backend's own promises: seed 002's layout (an existing data directory
opens as it is), no path outside the data directory whatever the ids, whole files after
kill -9, and processes appending to one user's history losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from memvault import MemVault, Settings
from memvault.errors import InvalidArgumentError
from memvault.storage.jsonfs import user_dir_name
from tests.integration.test_seed_import import _elysia_dir

WRITER = [sys.executable, str(Path(__file__).with_name("msg_writer_proc.py"))]


def _settings(root: Path, **kw: object) -> Settings:
    return Settings(data_dir=root.parent, database_url=f"jsonfs://{root}", job_worker=False, **kw)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _all_json_whole(root: Path) -> int:
    n = 0
    for path in root.rglob("*.json"):
        if path.name.startswith("."):
            continue
        json.loads(path.read_bytes())  # raises when a file is torn
        n += 1
    return n


def test_a_seed_002_directory_opens_as_it_is_and_keeps_its_shape(tmp_path: Path) -> None:
    data = _elysia_dir(tmp_path / "data")
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with MemVault(_settings(data)) as v:
        assert v.get_user("user123").username == "JohnDoe"
        assert [m.content for m in v.get_message_history("user123")] == [
            "Hello, Elysia!",
            "Hi John!",
        ]
        facts = sorted(str(f.content) for f in v.get_user_facts("user123"))
        assert facts == ["Is allergic to cats", "Lives in New York"]
        assert v.get_global_context() == {"assistant_name": "Elysia"}
        # Reading changed nothing on disk.
        assert {p: p.read_bytes() for p in before} == before
        assert [h.memory.content for h in v.search("user123", "cats allergy", k=1)] == [
            "Is allergic to cats"
        ]
        v.add_user_fact("user123", "Plays chess", "hobbies")
        v.add_message("user123", "user", "Checkmate!")
    facts_file = json.loads((data / "user123" / "user_facts.json").read_text())
    assert {f["fact"] for f in facts_file} == {
        "Lives in New York",
        "Is allergic to cats",
        "Plays chess",
    }
    assert all(
        {"id", "fact", "category", "timestamp", "importance"} <= f.keys() for f in facts_file
    )
    history = json.loads((data / "user123" / "conversation_history.json").read_text())
    assert [(m["role"], m["content"]) for m in history][-1] == ("user", "Checkmate!")
    assert all({"id", "role", "content", "timestamp"} <= m.keys() for m in history)
    with MemVault(_settings(data)) as v:  # and what memvault wrote reads back the same
        assert len(v.get_user_facts("user123")) == 3
        assert v.get_message_history("user123")[-1].content == "Checkmate!"


_ids = st.one_of(
    st.sampled_from(
        [
            "../escape",
            "../../etc/passwd",
            "/abs/path",
            "a/b",
            "..",
            ".",
            "CON",
            "nul",
            "com1",
            "user\\..\\x",
            "\u2024\u2024/x",  # one-dot leaders
            "ﬁle",  # a ligature that NFKC folds
            "Alice",
            "alice",
            " lead",
            "a" * 128,
            "\u202eevil",
        ]
    ),
    st.text(min_size=1, max_size=40),
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(user_ids=st.lists(_ids, min_size=1, max_size=4))
def test_no_id_reaches_a_path_outside_the_data_directory(
    tmp_path_factory: pytest.TempPathFactory, user_ids: list[str]
) -> None:
    base = tmp_path_factory.mktemp("fs")
    root = base / "data"
    with MemVault(_settings(root)) as v:
        for uid in user_ids:
            try:
                v.add(uid, "x")
                v.add_message(uid, "user", "y")
                v.save_summary(uid, "z")
            except InvalidArgumentError:
                continue  # refused before anything was written
    outside = [p for p in base.rglob("*") if root not in p.parents and p != root]
    assert outside == []
    for p in root.rglob("*"):
        assert p.resolve().is_relative_to(root.resolve())
    names = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert all(n == user_dir_name(n) or n.startswith("_") for n in names)
    assert len(set(names)) == len(names)


def test_folder_names() -> None:
    assert user_dir_name("user123") == "user123"
    for hostile in ("..", "../x", "a/b", "CON", "con", "Alice", "a..b", "", "x" * 65):
        name = user_dir_name(hostile)
        assert name.startswith("_"), hostile
        assert len(name) == 41, hostile
    assert user_dir_name("Alice") != user_dir_name("alice")


def test_two_processes_appending_to_one_history_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    MemVault(_settings(root)).close()
    url = f"jsonfs://{root}"
    procs = [
        subprocess.Popen(
            [*WRITER, url, "shared", tag, "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for tag in ("a", "b")
    ]
    acked = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        acked += out.split()
    with MemVault(_settings(root, max_messages=100_000)) as v:
        got = [m.message_id for m in v.get_message_history("shared", limit=1000)]
        assert sorted(got) == sorted(acked)
        assert len(got) == 120
        assert v.count("shared") == 40


def test_kill_9_mid_write_leaves_whole_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    MemVault(_settings(root)).close()
    acked: list[str] = []
    for round_ in range(4):
        proc = subprocess.Popen(
            [*WRITER, f"jsonfs://{root}", "crash", f"r{round_}", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        got = 0
        while got < 5 + 7 * round_ and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
            got += 1
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        acked += rest.split()
        assert _all_json_whole(root) > 0
    with MemVault(_settings(root, max_messages=100_000)) as v:
        kept = {m.message_id for m in v.get_message_history("crash", limit=10_000)}
        assert set(acked) <= kept
    assert not list(root.rglob(".*.tmp"))  # stale temp files were cleared at open


def test_seed_002s_own_calls_on_its_data_directory(tmp_path: Path) -> None:
    """`initialize({"DATA_DIR": ...})` on a directory of seed 002's files works in place."""
    from memvault import memory_management

    data = _elysia_dir(tmp_path / "data")
    memory_management.initialize({"DATA_DIR": str(data), "MEMVAULT_JOB_WORKER": "false"})
    try:
        memory = memory_management.get_memory_store()
        assert memory.vault.settings.database_url.startswith("jsonfs://")
        facts = {f["fact"] for f in memory.get_user_facts("user123")}
        assert facts == {"Lives in New York", "Is allergic to cats"}
        memory.add_message("user123", "user", "Back again")
        assert memory.get_message_history("user123")[-1]["content"] == "Back again"
        assert memory.update_streak("user123")["current_streak"] >= 1
    finally:
        memory_management.get_memory_store().close()
    on_disk = json.loads((data / "user123" / "conversation_history.json").read_text())
    assert on_disk[-1]["content"] == "Back again"
    assert not (data / "memvault.db").exists()
