"""What changed since a point in time, for caches that must never serve stale data: a mixin
of the SQLite backend.

Every change of a memory writes a history row, a new memory is a new row, and erasing a user
writes an audit row; all three ids only grow, so "what changed" is the rows past the last
ids a cache has seen. Asking costs one indexed query; `data_changed` first asks whether
any connection has committed at all since this thread last looked, so an idle database
costs nothing more: it compares the WAL index's header, read from the `-shm` file's shared
mapping (every commit changes it; `SqliteConnections.wal_index_header`, 0.1 us), or, where
that file cannot be read, SQLite's `PRAGMA data_version` (3 us).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from memvault.storage.base import ChangeFeed

_SCAN_LIMIT = 10_000


class ChangeStore:
    """`data_changed` and `changes_since` for the SQLite backend."""

    _point_read: Callable[..., Any]
    _read: Callable[..., Any]
    db: Any  # SqliteConnections

    _versions: dict[int, int | bytes]
    _versions_lock: threading.Lock

    async def data_changed(self) -> bool:
        """Whether any connection committed since the calling thread's read connection last
        asked (True the first time)."""
        return self.data_changed_now()

    def data_changed_now(self) -> bool:
        """`data_changed` without a coroutine, past the runner, keyed by the calling
        thread's connection: neither the WAL index header nor the pragma takes a lock or
        waits, and this check sits in front of every cached read (the runner's layers cost
        more than the check itself)."""
        conn = self.db.reader()
        version: int | bytes | None = self.db.wal_index_header()
        if version is None:
            try:
                version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                version = self.db.read(
                    lambda c: int(c.execute("PRAGMA data_version").fetchone()[0])
                )
        versions = self._seen_versions()
        key = id(conn)
        before = versions.get(key)
        versions[key] = version
        return before != version

    async def changes_since(self, history_id: int, audit_id: int, memory_pk: int) -> ChangeFeed:
        def run(conn: sqlite3.Connection) -> ChangeFeed:
            # New memories: a creation writes no history row until the memory first changes.
            created = conn.execute(
                "SELECT pk, user_id, memory_id FROM memories WHERE pk > ? ORDER BY pk LIMIT ?",
                (memory_pk, _SCAN_LIMIT),
            ).fetchall()
            rows = conn.execute(
                "SELECT history_id, user_id, memory_id FROM memory_history "
                "WHERE history_id > ? ORDER BY history_id LIMIT ?",
                (history_id, _SCAN_LIMIT),
            ).fetchall()
            erased = conn.execute(
                "SELECT audit_id, user_id, action FROM audit_log WHERE audit_id > ? "
                "ORDER BY audit_id",
                (audit_id,),
            ).fetchall()
            return ChangeFeed(
                history_id=rows[-1][0] if rows else history_id,
                audit_id=erased[-1][0] if erased else audit_id,
                memory_pk=created[-1][0] if created else memory_pk,
                memories=[(r[1], r[2]) for r in (*created, *rows)],
                users=[r[1] for r in erased if r[2] == "user.erase" and r[1] is not None],
                truncated=len(rows) == _SCAN_LIMIT or len(created) == _SCAN_LIMIT,
            )

        result: ChangeFeed = await self._point_read(run)
        return result

    async def change_position(self) -> ChangeFeed:
        """Where the feed is now, with nothing in it (a new cache starts here)."""

        def run(conn: sqlite3.Connection) -> ChangeFeed:
            row = conn.execute(
                "SELECT (SELECT max(history_id) FROM memory_history), "
                "(SELECT max(audit_id) FROM audit_log), (SELECT max(pk) FROM memories)"
            ).fetchone()
            return ChangeFeed(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), [], [])

        result: ChangeFeed = await self._point_read(run)
        return result

    def _seen_versions(self) -> dict[int, int | bytes]:
        try:
            return self._versions
        except AttributeError:
            self._versions = {}
            return self._versions
