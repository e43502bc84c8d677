"""SQLite connections: one writer behind a lock, one reader per thread, busy handling.

Why this shape: SQLite allows one writer at a time per file. Inside a process, writes queue
on one connection (a lock, or the single writer thread of the async runner); across
processes, `BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails
half way on an upgrade, and a busy lock is retried until `sqlite_busy_timeout_s` has passed,
after which `UnavailableError` (safe to retry) is raised - never "database is locked".
WAL lets readers run beside the writer. With `synchronous=NORMAL` a committed transaction
survives a crash of the process (kill -9); `FULL` also survives power loss.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from memvault.errors import ConflictError, MemvaultError, UnavailableError

T = TypeVar("T")


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def translate(exc: sqlite3.Error) -> Exception:
    """A driver error as a memvault error (the caller chains it with `from`)."""
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc)
        if "UNIQUE" in text:
            return ConflictError("a live memory with this namespace and key already exists")
        return MemvaultError(f"the change broke a storage constraint: {text}")
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return MemvaultError(f"SQLite rejected a statement: {exc}")
    if is_busy(exc):
        return UnavailableError("the database stayed locked by another writer; retry")
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return UnavailableError(f"the SQLite database cannot be used: {exc}")
    return UnavailableError(f"SQLite error: {exc}")


class SqliteConnections:
    """The writer connection, per-thread readers and the write-transaction loop."""

    def __init__(self, path: Path, *, busy_timeout_s: float, synchronous: str) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self.write_lock = threading.Lock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self.writer = self._connect()
        self._retry(lambda: self.writer.execute("PRAGMA journal_mode=WAL").fetchone())

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=min(self.busy_timeout_s, 5.0),
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16000")
        conn.execute("PRAGMA mmap_size=1073741824")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (created on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise UnavailableError("the memvault store is closed")
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.Error as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                raise translate(exc) from exc

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on this thread's connection, retrying while the file is busy."""
        conn = self.reader()
        return self._retry(lambda: fn(conn))

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction; retried as a whole while the file is busy."""
        with self.write_lock:
            return self._write_locked(fn)

    def try_write(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Like `write`, but only when no other thread of this process is writing."""
        if not self.write_lock.acquire(blocking=False):
            return False, None
        try:
            return True, self._write_locked(fn)
        finally:
            self.write_lock.release()

    def _write_locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise UnavailableError("the memvault store is closed")
        conn = self.writer

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[sqlite3.Connection]:
        with self.write_lock:
            yield self.writer

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
