"""The JSON-file backend's own promises: seed 002's layout (an existing data directory
opens as it is), no path outside the data directory whatever the ids, whole files after
kill -9, and processes appending to one user's history losing nothing."""

from __future__ import annotations

import json
import os
import shutil
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


def _seed_dir(root: Path) -> Path:
    """Seed 002's directory of the import tests, without its deliberately broken user."""
    data = _elysia_dir(root)
    shutil.rmtree(data / "user456")
    return data


def test_a_broken_seed_file_stops_the_open_and_changes_nothing(tmp_path: Path) -> None:
    from memvault.errors import UnavailableError

    data = _elysia_dir(tmp_path / "data")  # user456/user_facts.json is not JSON
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    with pytest.raises(UnavailableError, match=r"user456/user_facts\.json is not valid JSON"):
        MemVault(_settings(data))
    after = {
        p: p.read_bytes() for p in data.rglob("*") if p.is_file() and ".memvault" not in p.parts
    }
    assert after == before


def test_a_seed_002_directory_opens_as_it_is_and_keeps_its_shape(tmp_path: Path) -> None:
    data = _seed_dir(tmp_path / "data")
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
    import tempfile

    dead = [
        p
        for p in Path(tempfile.gettempdir()).glob("memvault-jsonfs-*-*")
        if not Path(f"/proc/{p.name.split('-')[2]}").exists()
    ]
    assert dead == []  # the killed writers' private indexes were removed


def test_seed_002s_own_calls_on_its_data_directory(tmp_path: Path) -> None:
    """`initialize({"DATA_DIR": ...})` on a directory of seed 002's files works in place."""
    from memvault import memory_management

    data = _seed_dir(tmp_path / "data")
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


def test_encrypted_files_round_trip_and_refuse_a_wrong_key(tmp_path: Path) -> None:
    from memvault.crypto import new_key
    from memvault.errors import ConfigurationError

    root = tmp_path / "data"
    key = new_key()
    with MemVault(_settings(root, encryption_key=key)) as v:
        v.add("alice", "Prefers oolong tea", tags=["secret-tag"])
        v.add_message("alice", "user", "my secret message")
        v.set_global_context("motto", "hidden value")
    for path in root.rglob("*.json*"):
        blob = path.read_bytes()
        assert blob.startswith(b"MVAE1\n"), path
        assert b"oolong" not in blob
        assert b"secret" not in blob
        assert b"hidden" not in blob
    with MemVault(_settings(root, encryption_key=key)) as v:
        assert [m.content for m in v.list_memories("alice").items] == ["Prefers oolong tea"]
        assert v.get_global_context() == {"motto": "hidden value"}
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for wrong in (new_key(), None):
        with pytest.raises(ConfigurationError, match="encrypted"):
            MemVault(_settings(root, encryption_key=wrong))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    # A file moved over another one does not decrypt.
    alice = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    (alice / "summary.json").write_bytes((alice / "memories.json").read_bytes())
    with pytest.raises(ConfigurationError, match="changed, or moved"):
        MemVault(_settings(root, encryption_key=key))


def test_key_rotation(tmp_path: Path) -> None:
    from memvault.crypto import new_key
    from memvault.errors import ConfigurationError
    from memvault.service import admin

    root = tmp_path / "data"
    old, new = new_key(), new_key()
    with MemVault(_settings(root, encryption_key=old)) as v:
        v.add("alice", "Prefers oolong tea")
        v.create_api_key("alice")
    written = admin.rotate_encryption_key(_settings(root, encryption_key=old), new)
    assert written["files"] >= 5
    with MemVault(_settings(root, encryption_key=new)) as v:
        assert v.count("alice") == 1
        assert len(v.list_api_keys()) == 1
    with pytest.raises(ConfigurationError):
        MemVault(_settings(root, encryption_key=old))
    # The old key kept as an old key still reads what it wrote (an interrupted rotation).
    with MemVault(_settings(root, encryption_key=new, encryption_old_keys=old)) as v:
        assert v.count("alice") == 1
    # Turning encryption on for a plain store: files are read plain and written encrypted.
    plain = tmp_path / "plain"
    with MemVault(_settings(plain)) as v:
        v.add("bob", "plain note")
    with MemVault(_settings(plain, encryption_key=new)) as v:
        v.add("bob", "second note")
        assert v.count("bob") == 2
    bob = next(p for p in plain.iterdir() if p.name == "bob")
    assert (bob / "memories.json").read_bytes().startswith(b"MVAE1\n")


def test_encryption_cli(tmp_path: Path) -> None:
    root = tmp_path / "data"
    key_file, new_file = tmp_path / "key", tmp_path / "new"
    env = dict(_env(), MEMVAULT_DATABASE_URL=f"jsonfs://{root}", MEMVAULT_DATA_DIR=str(tmp_path))

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memvault", *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=120,
            check=False,
        )

    assert run("encryption", "keygen", "-o", str(key_file)).returncode == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert run("encryption", "keygen", "-o", str(new_file)).returncode == 0
    with_key = {"MEMVAULT_ENCRYPTION_KEY_FILE": str(key_file)}
    assert run("add", "alice", "likes tea", **with_key).returncode == 0
    r = run("list", "alice")
    assert r.returncode == 9
    assert "encrypted" in r.stderr
    r = run("encryption", "rotate", "--new-key-file", str(new_file), **with_key)
    assert r.returncode == 0, r.stderr
    r = run("list", "alice", "--json", MEMVAULT_ENCRYPTION_KEY_FILE=str(new_file))
    assert [m["content"] for m in json.loads(r.stdout)["items"]] == ["likes tea"]


def test_migrate_points_json_files_to_export_and_import(tmp_path: Path) -> None:
    from memvault.service import admin

    s = _settings(tmp_path / "data")
    for src, dst in (
        (f"sqlite:///{tmp_path / 'a.db'}", f"jsonfs://{tmp_path / 'j'}"),
        (f"jsonfs://{tmp_path / 'j'}", f"sqlite:///{tmp_path / 'b.db'}"),
    ):
        with pytest.raises(InvalidArgumentError, match="export"):
            admin.transfer_store(s, src, dst)


def test_seed_users_stay_when_another_process_writes_first(tmp_path: Path) -> None:
    """A process that opened a seed 002 directory keeps its users after another one writes
    (the index the writer saves lists the folders it found too)."""
    data = _seed_dir(tmp_path / "data")
    (data / "users_index.json").unlink()  # the user folders alone say who is there
    with MemVault(_settings(data)) as reader, MemVault(_settings(data)) as writer:
        writer.add("someone-else", "a note")
        assert reader.get_user("user123").username == "JohnDoe"
        assert len(reader.get_user_facts("user123")) == 2
    index = json.loads((data / "users_index.json").read_text())
    assert {"user123", "someone-else"} <= set(index)


def test_a_malformed_memvault_record_stops_the_open_and_changes_nothing(tmp_path: Path) -> None:
    from memvault.errors import UnavailableError

    root = tmp_path / "data"
    with MemVault(_settings(root)) as v:
        v.add("alice", "a note")
    (root / "alice" / "memories.json").write_text('[{"memory_id": "mem_x"}]')
    before = {p: p.read_bytes() for p in root.rglob("*.json")}
    with pytest.raises(UnavailableError, match="malformed record"):
        MemVault(_settings(root))
    assert {p: p.read_bytes() for p in root.rglob("*.json")} == before
