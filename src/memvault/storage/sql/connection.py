"""SQLite connections: one writer behind a lock, one reader per thread, busy handling.

Why this shape: SQLite allows one writer at a time per file. Inside a process, writes queue
on one connection (a lock, or the single writer thread of the async runner); across
processes, `BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails
half way on an upgrade, and a busy lock is retried until `sqlite_busy_timeout_s` has passed,
after which `UnavailableError` (safe to retry) is raised - never "database is locked".
WAL lets readers run beside the writer. With `synchronous=NORMAL` a committed transaction
survives a crash of the process (kill -9); `FULL` also survives power loss.

Checkpoints (copying the WAL back into the database file, with its fsyncs) run mostly on a
thread of their own: SQLite's automatic checkpoint, run inside a writer's COMMIT, made every
16th commit of a bulk ingest take 8 ms instead of 0.3 ms, about 10 % of ingest time. The
thread copies the WAL about every 250 pages without holding up the writer; past 750 pages
the writer copies the rest itself (`Checkpointer`). That last step stays on the writer on
purpose: the WAL file is reused from its start only when a writer begins with every page
copied, which a thread racing a busy writer never sees (the WAL then grew to 40 MB and
every commit paid for extending the file).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from memvault.errors import ConflictError, MemvaultError, UnavailableError

T = TypeVar("T")

log = logging.getLogger(__name__)

CHECKPOINT_TARGET_PAGES = 250  # the checkpoint thread's rhythm
WRITER_FINISH_PAGES = 750  # from this WAL size on, the writer finishes the checkpoint
ROUND_AFTER_S = 5.0  # a commit waits at most this long for a round (then the WAL is copied)
IDLE_EXIT_S = 30.0  # the thread ends after this long without commits
TASK_EVERY_S = 1.0  # how often the thread runs its `task` (index upkeep), commits or not
WAL_INDEX_HEADER_BYTES = 96  # two copies of the 48-byte WAL-index header
SQLITE_AUTOCHECKPOINT = 1000  # SQLite's own, back on the writer should the thread fail


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


class _IndexMaps:
    """The process's read-only mappings of WAL index files (`<file>-shm`), one per file,
    shared by every store on it and closed when the last of them closes.

    Why not open, map and close per store: POSIX record locks belong to the process, and
    closing *any* descriptor of a file drops every lock the process holds on it. SQLite
    keeps shared locks on the WAL index while it uses it (one says "in use", others guard
    each reader's snapshot); dropping them lets another process take itself for the only
    user and wipe the index (truncating the file: a mapping of it then faults with SIGBUS)
    or check-point pages a reader here still needs. So a descriptor is closed only when no
    store of this process uses the file, after the store's connections (SQLite's own
    descriptor is closed then too). Plain SQLite connections of the caller's own to the
    same file in the same process are not seen here: closing a memvault store beside one
    drops its index locks (as any second opener of the file would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_file: dict[tuple[int, int], tuple[mmap.mmap, list[int], int]] = {}

    def acquire(self, path: str) -> mmap.mmap | None:
        """The mapping of `path` (counted until `release`), or None where there is no
        such file yet or it is shorter than the header."""
        with self._lock:
            try:
                st = os.stat(path)
            except OSError:
                return None
            key = (st.st_dev, st.st_ino)
            held = self._by_file.get(key)
            if held is not None:
                view, fds, users = held
                self._by_file[key] = (view, fds, users + 1)
                return view
            if st.st_size < WAL_INDEX_HEADER_BYTES:
                return None
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            opened = os.fstat(fd)
            key = (opened.st_dev, opened.st_ino)  # replaced since the stat: this one
            held = self._by_file.get(key)
            if held is not None:  # never closed before the rest (it holds the locks too)
                view, fds, users = held
                self._by_file[key] = (view, [*fds, fd], users + 1)
                return view
            try:
                view = mmap.mmap(fd, WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                # shorter than the header after all: the descriptor stays with the others
                # of this process (closing it would drop SQLite's locks) until exit
                _STRAY_FDS.append(fd)
                return None
            self._by_file[key] = (view, [fd], 1)
            return view

    def release(self, view: mmap.mmap) -> None:
        with self._lock:
            for key, (held, fds, users) in list(self._by_file.items()):
                if held is view:
                    if users > 1:
                        self._by_file[key] = (held, fds, users - 1)
                        return
                    del self._by_file[key]
                    held.close()
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    return


_INDEX_MAPS = _IndexMaps()
_STRAY_FDS: list[int] = []


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
        self.writer.execute("PRAGMA wal_autocheckpoint=0")  # see Checkpointer
        self.checkpointer = Checkpointer(lambda: self._connect(register=False))
        self._shm: mmap.mmap | None = None
        self._shm_lock = threading.Lock()

    def _connect(self, *, register: bool = True) -> sqlite3.Connection:
        """A configured connection; `register`ed ones are closed by `close` (the
        checkpoint thread closes its own)."""
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
        if register:
            with self._all_lock:
                self._all.append(conn)
        return conn

    def wal_index_header(self) -> bytes | None:
        """The WAL index's header, both copies (the first 96 bytes of `<file>-shm`, read
        through a shared mapping; SQLite's documented WAL format), or None where it cannot
        be read (no -shm file yet). Every commit, by any connection of any process, changes
        it (its change counter, frame count and checksums) before COMMIT returns, so equal
        headers mean no commit in between: what `PRAGMA data_version` tells, for 0.1 us
        instead of 3 (14 on a thread just woken). A read that races a commit sees bytes of
        both or a torn mix: either way not the old header. The mapping is the process's
        (`_IndexMaps`), kept until this and every other store on the file has closed."""
        view = self._shm
        if view is None:
            with self._shm_lock:
                if self._closed:
                    return None
                if self._shm is None:
                    self._shm = _INDEX_MAPS.acquire(f"{self.path}-shm")
                    if self._shm is None:
                        return None
                view = self._shm
        try:
            return view[:WAL_INDEX_HEADER_BYTES]
        except ValueError:  # closed meanwhile
            return None

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

        result = self._retry(attempt)
        self.checkpointer.committed(self.writer)
        return result

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[sqlite3.Connection]:
        with self.write_lock:
            yield self.writer

    def close(self) -> None:
        self._closed = True
        self.checkpointer.stop()
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        with self._shm_lock:  # after the connections: see _IndexMaps
            if self._shm is not None:
                _INDEX_MAPS.release(self._shm)
                self._shm = None


class Checkpointer:
    """WAL checkpoints mostly off the writer (SQLite's automatic checkpoint is off on it).

    A thread of its own runs `PRAGMA wal_checkpoint(PASSIVE)` after every `every` commits,
    or `ROUND_AFTER_S` after a commit when fewer came; `every` adapts so that a round finds
    about `CHECKPOINT_TARGET_PAGES` new pages (every few commits of 100-row batches, about
    every hundred single-row writes). PASSIVE never waits for readers or blocks the
    writer; pages a reader still needs stay for a later round. Once a round has seen
    `WRITER_FINISH_PAGES` in the WAL, the writer finishes the job itself right after its
    next commit, copying what the thread has not (a round's worth), so that its next
    transaction begins with every page copied and SQLite reuses the WAL file from its
    start. Two checkpoints never run at once (`lock`): with a busy thread, the writer's
    attempt would fail and the WAL grow. Should the thread fail, the writer gets SQLite's
    automatic checkpoint back.

    The thread starts at the first commit (or `wake`) and ends with `stop` (after a last
    round), or after `IDLE_EXIT_S` without commits (the next commit starts it again).

    `task`, when set, is upkeep that belongs off the callers' path too (the full-text
    index's merges, `fts_plan.Compactor`): the thread calls it with its own connection
    about every `TASK_EVERY_S` while it runs, between rounds; it must return quickly,
    leave no statement open and never raise."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self.every = 16
        self.lock = threading.Lock()
        self._pending = 0
        self._due = threading.Event()
        self._stopping = False
        self._failed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._frames = 0  # WAL frames the last round found
        self._finished = False
        self.runs = 0  # rounds on the thread (for tests and diagnostics)
        self.finishes = 0  # rounds on the writer
        self.task: Callable[[sqlite3.Connection], None] | None = None

    def wake(self) -> None:
        """Start the thread without a commit (its `task` has work in a store just opened)."""
        if self._thread is None and not self._failed:
            self._start()

    def committed(self, writer: sqlite3.Connection) -> None:
        """A write transaction committed on `writer` (called under the write lock)."""
        if self._failed:
            self._failed = False
            writer.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")
            self._stopping = True  # no thread again: SQLite checkpoints from now on
            return
        if self._stopping:
            return
        if self._frames >= WRITER_FINISH_PAGES:
            with self.lock:
                self._frames = 0
                self._pending = 0
                self._due.clear()
                self._finished = True  # a round now would hold up the WAL's restart
                self.finishes += 1
                with contextlib.suppress(sqlite3.OperationalError):  # another process's
                    writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return
        self._pending += 1
        self._finished = False
        if self._thread is None:
            self._start()
        if self._pending >= self.every and not self._due.is_set():
            self._due.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                thread = threading.Thread(target=self._run, name="memvault-checkpoint", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # no thread to be had: SQLite checkpoints
                    log.warning("no checkpoint thread (SQLite checkpoints on commit): %s", exc)
                    self._failed = True
                    return
                self._thread = thread

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        idle = 0.0
        waited = 0.0  # since the last round, while commits were pending
        try:
            conn = self._connect()
            while True:
                step = ROUND_AFTER_S if self.task is None else TASK_EVERY_S
                due = self._due.wait(step)
                if self.task is not None and not self._stopping:
                    self.task(conn)
                if not due:
                    if not self._pending:
                        idle += step
                        if idle >= IDLE_EXIT_S and self._leave_idle():
                            return
                        continue
                    waited += step
                    if waited < ROUND_AFTER_S:
                        continue
                idle = waited = 0.0
                self._due.clear()
                commits, self._pending = self._pending, 0
                if commits or not self._stopping:
                    self._round(conn, commits)
                if self._stopping:
                    break
        except Exception as exc:  # noqa: BLE001 - whatever it was, SQLite takes over
            log.warning("checkpoint thread stopped (SQLite checkpoints on commit): %s", exc)
            self._failed = True
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _leave_idle(self) -> bool:
        """End the thread after `IDLE_EXIT_S` without commits (the next commit starts
        another), so that a store dropped without `close` does not keep a thread and a
        connection for ever."""
        with self._start_lock:
            if self._pending or self._due.is_set() or self._stopping:
                return False
            self._thread = None
            return True

    def _round(self, conn: sqlite3.Connection, commits: int) -> None:
        with self.lock:
            if not self._stopping and (self._finished or self._frames >= WRITER_FINISH_PAGES):
                # due before the writer finished (nothing to copy), or the writer's turn
                # (a round now would make it wait at its next commit)
                self._finished = False
                return
            try:
                # fetchall: a statement left open would hold a read lock on the WAL
                rows = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return  # another process is checkpointing: next round
                raise
            self.runs += 1
            frames = int(rows[0][1]) if rows and rows[0][1] is not None else -1
            if frames < 0:  # not in WAL mode
                return
            # frames count from the WAL's last restart (by this writer only, after a
            # finish): the new pages are the difference
            pages = frames - self._frames if frames >= self._frames else frames
            self._frames = frames
        if pages > 0 and commits > 0:
            scaled = CHECKPOINT_TARGET_PAGES * commits // pages
            self.every = max(1, self.every // 4, min(4096, 4 * self.every, scaled))

    def stop(self) -> None:
        """End the thread after a last round (pages still needed stay in the WAL)."""
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        if thread is None:
            return
        self._due.set()
        thread.join(timeout=30)
