"""WAL checkpoints on their own thread (storage/sql/connection.py): they happen, the WAL
file is reused instead of growing, readers keep their snapshot, nothing is lost on close.
And the WAL index's header, which tells caches whether anything was committed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memvault.storage.sql import connection
from memvault.storage.sql.connection import WRITER_FINISH_PAGES, SqliteConnections

ROW = b"x" * 3000  # about one page a row


def _open(path: Path) -> SqliteConnections:
    db = SqliteConnections(path, busy_timeout_s=5.0, synchronous="NORMAL")
    db.write(lambda c: c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)"))
    return db


def _insert(db: SqliteConnections, rows: int) -> None:
    db.write(lambda c: c.executemany("INSERT INTO t (body) VALUES (?)", [(ROW,)] * rows))


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "memvault-checkpoint"]


def test_checkpoints_run_off_the_writer_and_the_wal_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = _open(path)
    page = db.writer.execute("PRAGMA page_size").fetchone()[0]
    for _ in range(400):  # about 20,000 pages through the WAL
        _insert(db, 50)
        # 50 pages a millisecond: still faster than memvault's own writes (a 100-memory
        # batch takes about 5 ms). Back to back, with another process syncing large files
        # (dd ... conv=fsync), rounds lagged and the WAL reached 43-60 MB; paced, 4-12 MB.
        time.sleep(0.001)
    # the thread copies about every 250 pages, the writer finishes past 750: the WAL file
    # restarts from its beginning instead of growing (a thread racing the writer alone let
    # it reach 40 MB, and SQLite's checkpoint inside COMMIT is off)
    assert db.checkpointer.runs >= 5
    assert db.checkpointer.finishes >= 3
    # 80 MB went through the WAL; a WAL never restarted would be that big.
    wal = os.path.getsize(f"{path}-wal")
    assert wal < 10 * WRITER_FINISH_PAGES * (page + 24), wal
    assert 1 <= db.checkpointer.every <= 16
    assert db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 20_000
    db.close()
    assert not _threads()
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 20_000


def test_a_reader_keeps_its_snapshot_while_checkpoints_run(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = _open(path)
    _insert(db, 10)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    for _ in range(200):
        _insert(db, 20)
    assert db.checkpointer.runs > 0
    # pages the open read still needs were not overwritten under it
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    assert reader.execute("SELECT sum(length(body)) FROM t").fetchone()[0] == 10 * len(ROW)
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 4010
    reader.close()
    for _ in range(50):  # with the reader gone, the WAL is copied and reused again
        _insert(db, 20)
    db.close()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 5010


def test_a_few_writes_then_close(tmp_path: Path) -> None:
    db = _open(tmp_path / "c.db")
    _insert(db, 1)
    assert db.checkpointer.runs == 0  # the first round waits for more commits or 5 s
    db.close()
    assert db.checkpointer.runs == 1  # the last round, on close
    assert not _threads()
    with sqlite3.connect(tmp_path / "c.db") as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_an_idle_thread_ends_and_the_next_commit_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a store dropped without close() must not keep a thread and a connection for ever
    monkeypatch.setattr(connection, "ROUND_AFTER_S", 0.02)
    monkeypatch.setattr(connection, "IDLE_EXIT_S", 0.1)
    db = _open(tmp_path / "c.db")
    _insert(db, 5)
    assert _threads()
    deadline = time.monotonic() + 10
    while _threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _threads()
    assert db.checkpointer.runs >= 1  # the commit was copied before the thread left
    _insert(db, 5)
    assert _threads()
    db.close()
    assert not _threads()
    with sqlite3.connect(tmp_path / "c.db") as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 10


def test_the_wal_index_header_moves_with_every_commit_of_any_process(tmp_path: Path) -> None:
    # ChangeStore.data_changed_now reads it instead of PRAGMA data_version: equal headers
    # must mean no commit in between, whoever committed
    path = tmp_path / "c.db"
    db = _open(path)
    _insert(db, 1)
    first = db.wal_index_header()
    assert first is not None
    assert len(first) == 96
    assert db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 1
    assert db.wal_index_header() == first  # reads change nothing
    _insert(db, 1)  # this process's writer
    second = db.wal_index_header()
    assert second != first
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('INSERT INTO t (body) VALUES (x\\'00\\')'); c.commit()",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    third = db.wal_index_header()
    assert third != second  # another process's commit
    db.close()
    assert db.wal_index_header() is None


# SQLite's unix VFS: the byte of `<file>-shm` every process that uses the WAL index holds a
# shared lock on (UNIX_SHM_DMS); a process that can lock it alone takes itself for the
# first and wipes the index (truncating the file: a mapping of it then raises SIGBUS)
SHM_DMS_BYTE = 128

LOCK_ALONE = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
except FileNotFoundError:
    print("gone")
    sys.exit()
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
except OSError:
    print("held")
else:
    print("free")
"""


def _dms(path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", LOCK_ALONE, str(path), str(SHM_DMS_BYTE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_reading_the_wal_index_header_keeps_this_process_s_locks(tmp_path: Path) -> None:
    # POSIX locks belong to the process and go with the first close of any descriptor of
    # the file: reading the header must not close one while SQLite uses the index, or a
    # second process starting then wipes the index under this one's readers
    path = tmp_path / "c.db"
    db = _open(path)
    _insert(db, 1)
    assert _dms(path) == "held"
    assert db.wal_index_header() is not None
    assert _dms(path) == "held"
    twin = SqliteConnections(path, busy_timeout_s=5.0, synchronous="NORMAL")
    assert twin.wal_index_header() == db.wal_index_header()
    twin.close()  # another store on the same file in this process: its close keeps them too
    assert _dms(path) == "held"
    _insert(db, 1)
    assert db.wal_index_header() is not None
    db.close()
    assert _dms(path) == "gone"  # the last connection of all removes the index


def test_without_a_thread_sqlite_checkpoints_on_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    db = _open(tmp_path / "c.db")  # its commit stands; no thread could start
    _insert(db, 5)
    assert not _threads()
    _insert(db, 5)  # and the writer has SQLite's automatic checkpoint back
    assert db.writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    monkeypatch.undo()
    for _ in range(100):
        _insert(db, 50)
    assert db.checkpointer.runs == 0
    assert os.path.getsize(f"{tmp_path / 'c.db'}-wal") < 2 * 1000 * 4200  # SQLite restarts it
    db.close()
    with sqlite3.connect(tmp_path / "c.db") as plain:
        assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 5010
