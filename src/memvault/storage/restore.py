"""Restoring archived records as they were (`memvault import`): a mixin of the SQL backends.

Records keep their ids, versions, timestamps and access counts. A record whose id is
already in the store is skipped, never overwritten, so importing an archive twice adds
nothing the second time and nothing already stored changes. A memory whose key a different
live memory of its user holds is skipped too (`key_taken`). History rows come with their
snapshots; the live version's row keeps an empty snapshot, as every change writes it
(`SqlBackend._record_change`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from memvault.crypto import Cipher
from memvault.models import HistoryEntry
from memvault.storage.base import Change, Restore, RestoreCounts
from memvault.storage.records import INSERT_METRICS, metrics_row
from memvault.storage.sql import codec
from memvault.storage.sql.dbapi import Conn

_IMPORT = Change("import")  # no actor and no reason: no history row of its own


class _DryRun(Exception):
    def __init__(self, counts: RestoreCounts) -> None:
        self.counts = counts


class RestoreStore:
    _write: Callable[..., Any]
    _ensure_user: Callable[..., None]
    _insert_rows: Callable[..., None]
    column_cipher: Cipher | None
    _put_session: Callable[..., None]

    async def restore(self, batch: Restore, now: datetime, dry_run: bool) -> RestoreCounts:
        """Insert what `batch` holds that the store lacks, in one transaction (rolled back
        when `dry_run`: the counts say what would happen)."""

        def run(conn: Conn) -> RestoreCounts:
            counts = self._restore_in(conn, batch, now)
            if dry_run:
                raise _DryRun(counts)
            return counts

        try:
            result: RestoreCounts = await self._write(run)
        except _DryRun as stop:
            return stop.counts
        return result

    def _restore_in(self, conn: Conn, batch: Restore, now: datetime) -> RestoreCounts:
        """`restore` inside the caller's transaction."""
        counts = RestoreCounts()
        for u in batch.users:
            done = conn.execute(
                "INSERT INTO users (user_id, username, profile, timezone, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                (
                    u.user_id,
                    u.username,
                    codec.dumps(u.profile),
                    u.timezone,
                    codec.ts(u.created_at),
                    codec.ts(u.updated_at),
                ),
            ).rowcount
            counts.add("user", "imported" if done else "exists")
        self._restore_memories(conn, batch, counts, now)
        for user_id, h in batch.history:
            self._restore_history(conn, user_id, h, counts)
        for m in batch.messages:
            if _exists(conn, "messages", "message_id", m.message_id):
                counts.add("message", "exists")
                continue
            self._ensure_user(conn, m.user_id, None, codec.ts(m.created_at))
            conn.execute(
                "INSERT INTO messages (message_id, user_id, session_id, role, content, "
                "metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    m.message_id,
                    m.user_id,
                    m.session_id,
                    m.role,
                    m.content,
                    codec.dumps(m.metadata),
                    codec.ts(m.created_at),
                ),
            )
            counts.add("message", "imported")
        for s in batch.sessions:
            if _exists(conn, "sessions", "session_id", s.session_id):
                counts.add("session", "exists")
                continue
            self._ensure_user(conn, s.user_id, None, codec.ts(s.created_at))
            self._put_session(conn, s, insert=True)
            counts.add("session", "imported")
        for sm in batch.summaries:
            self._ensure_user(conn, sm.user_id, None, codec.ts(sm.created_at))
            done = conn.execute(
                "INSERT INTO summaries (user_id, content, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                (sm.user_id, sm.content, codec.ts(sm.created_at), codec.ts(sm.updated_at)),
            ).rowcount
            counts.add("summary", "imported" if done else "exists")
        for mt in batch.metrics:
            self._ensure_user(conn, mt.user_id, None, codec.ts(now))
            done = conn.execute(
                f"{INSERT_METRICS} ON CONFLICT (user_id) DO NOTHING", metrics_row(mt)
            ).rowcount
            counts.add("metrics", "imported" if done else "exists")
        for c in batch.context:
            done = conn.execute(
                "INSERT INTO global_context (key, value, updated_at, updated_by) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (c.key, codec.dumps(c.value), codec.ts(c.updated_at), c.updated_by),
            ).rowcount
            counts.add("global_context", "imported" if done else "exists")
        return counts

    def _restore_memories(
        self, conn: Conn, batch: Restore, counts: RestoreCounts, now: datetime
    ) -> None:
        fresh = []
        for m in batch.memories:
            if _exists(conn, "memories", "memory_id", m.memory_id):
                counts.add("memory", "exists")
                continue
            if m.deleted_at is None and m.key != m.memory_id:
                taken = conn.execute(
                    'SELECT memory_id FROM memories WHERE user_id = ? AND namespace = ? AND "key" '
                    "= ? AND deleted_at IS NULL",
                    (m.user_id, m.namespace, m.key),
                ).fetchone()
                if taken is not None:
                    counts.add("memory", "key_taken")
                    continue
            self._ensure_user(conn, m.user_id, None, codec.ts(m.created_at))
            fresh.append(m)
        if fresh:
            self._insert_rows(conn, fresh, _IMPORT, now)
            counts.new_memories.extend((m.user_id, m.memory_id) for m in fresh)
            counts.add("memory", "imported", len(fresh))

    def _restore_history(
        self, conn: Conn, user_id: str, h: HistoryEntry, counts: RestoreCounts
    ) -> None:
        row = conn.execute(
            "SELECT user_id, version FROM memories WHERE memory_id = ?", (h.memory_id,)
        ).fetchone()
        if row is None or row[0] != user_id:
            counts.add("history", "no_memory")
            return
        exists = conn.execute(
            "SELECT 1 FROM memory_history WHERE memory_id = ? AND version = ?",
            (h.memory_id, h.version),
        ).fetchone()
        if exists is not None:
            counts.add("history", "exists")
            return
        live = h.version == row[1]
        conn.execute(
            "INSERT INTO memory_history (memory_id, user_id, version, operation, changed_at, "
            "actor, reason, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                h.memory_id,
                user_id,
                h.version,
                h.operation,
                codec.ts(h.changed_at),
                h.actor,
                h.reason,
                None
                if live
                else codec.seal_snapshot(
                    codec.dumps(h.snapshot), h.memory_id, h.version, self.column_cipher
                ),
            ),
        )
        counts.add("history", "imported")


def _exists(conn: Conn, table: str, column: str, value: str) -> bool:
    return (
        conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)).fetchone() is not None
    )
