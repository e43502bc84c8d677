"""The SQL backends' shared body: memories, history, vectors as rows, neighbours, purge.

`SqliteBackend` and `PostgresBackend` run the same statements (SQLAlchemy Core compiled per
dialect, and hand-written SQL both engines speak) through one connection interface
(`storage/sql/dbapi.py`); each adds only what differs: its full-text index, its vector
search, its change feed and its connections. Hooks a backend overrides are the methods whose
names start with `_hook_`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from memvault.config import Settings
from memvault.crypto import Cipher, cipher_for
from memvault.errors import (
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from memvault.limits import COMPRESS_CONTENT_FROM
from memvault.models import Filters, HistoryEntry, Memory, content_text
from memvault.storage.access import AccessTracker
from memvault.storage.base import (
    Candidate,
    Capabilities,
    Change,
    JobDone,
    MemoryChange,
    Merge,
    PurgeCounts,
    StoreStats,
)
from memvault.storage.jobs import JobStore, finish_job
from memvault.storage.keys import KeyStore
from memvault.storage.meta_match import metadata_matches
from memvault.storage.records import RecordStore
from memvault.storage.restore import RestoreStore
from memvault.storage.runner import Runner
from memvault.storage.search_text import CONTEXT_WINDOW, fresh_contexts, search_context
from memvault.storage.sql import codec
from memvault.storage.sql.dbapi import Conn, Connections
from memvault.storage.sql.queries import Statements, decode_cursor, encode_cursor

_CHECK = b"memvault encryption check"
_CHECK_WHERE = "encryption_check"

# Search winners passed the caller's filters already (an `as_of` may have picked ended
# facts); read again, they are only checked to be live and unexpired.
_WINNERS = Filters(include_superseded=True)
_DELETED_AT = codec.MEMORY_COLUMNS.index("deleted_at")
_EXPIRES_AT = codec.MEMORY_COLUMNS.index("expires_at")
_METADATA = codec.MEMORY_COLUMNS.index("metadata")
_CONTENT_Z = codec.MEMORY_COLUMNS.index("content_z")
_ENC_KEY = codec.MEMORY_COLUMNS.index("enc_key")


def _candidate(row: Sequence[Any], lexical: float = 0.0, vector: float | None = None) -> Candidate:
    """A candidate from the scoring columns (queries._LIGHT_COLS)."""
    role = row[6] if isinstance(row[6], str) else None
    speaker = row[7] if isinstance(row[7], str) else None
    return Candidate(
        row[0], row[1], row[2], row[3], lexical, vector, bool(row[4]), row[5], role, speaker
    )


_ROTATE_BATCH = 500  # rows sealed again per transaction of a key rotation
_ROTATE_PASSES = 5  # passes over the store before a rotation gives up on busy writers
_SEALED_PAGE = 512  # rows opened per step of a sealed store's metadata-filtered listing


def _cursor_after(order: str, row: Sequence[Any]) -> str:
    """The cursor of the listing page that ends with memory row `row`."""
    sort_value = {
        "created_desc": row[19],
        "created_asc": row[19],
        "importance_desc": row[11],
        "updated_desc": row[20],
    }[order]
    return encode_cursor(order, sort_value, row[0])


class SqlBackend(RecordStore, KeyStore, JobStore, RestoreStore):
    """Everything SQLite and PostgreSQL do alike. Subclasses set `db`, `sql`, `runner`,
    `access` and implement the search and change-feed methods of `Backend`."""

    db: Connections
    sql: Statements
    runner: Runner
    access: AccessTracker
    _closed: bool
    # Seals memory content and metadata when the store encrypts them (`_open_encryption`).
    column_cipher: Cipher | None = None
    capabilities: Capabilities

    # ------------------------------------------------------------------ encryption
    def _open_encryption(self, settings: Settings) -> None:
        """Check the store's encryption against the configured keys, before any write.

        A store with an `encryption_check` row seals memory content and metadata: it needs
        the key of that row (current or among the old keys), and a wrong one stops here. A
        store without one starts sealing when `encrypt_content` is on (rows written before
        stay plain until `memvault encryption rotate`)."""
        cipher = cipher_for(settings)

        def check(conn: Conn) -> bool:
            """True when the store seals (and its check row passed)."""
            row = conn.execute(
                "SELECT key_id, sample FROM encryption_check WHERE id = 1"
            ).fetchone()
            if row is None:
                if not settings.encrypt_content:
                    return False
                if cipher is None:
                    raise ConfigurationError(
                        "MEMVAULT_ENCRYPT_CONTENT is on but no key is configured: set "
                        "MEMVAULT_ENCRYPTION_KEY or MEMVAULT_ENCRYPTION_KEY_FILE "
                        "(`memvault encryption keygen` makes one)"
                    )
                conn.execute(
                    "INSERT INTO encryption_check (id, key_id, sample, updated_at) "
                    "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    (
                        cipher.key_id,
                        cipher.encrypt(_CHECK, _CHECK_WHERE),
                        codec.ts(datetime.now(UTC)),
                    ),
                )
                row = conn.execute(
                    "SELECT key_id, sample FROM encryption_check WHERE id = 1"
                ).fetchone()
            if cipher is None:
                raise ConfigurationError(
                    "this store encrypts memory content and metadata: set "
                    "MEMVAULT_ENCRYPTION_KEY or MEMVAULT_ENCRYPTION_KEY_FILE to its key"
                )
            try:
                sample = cipher.decrypt(bytes(row[1]), _CHECK_WHERE)
            except ConfigurationError:
                raise ConfigurationError(
                    f"this store's memory content is encrypted with key id {row[0]}, which is "
                    "not the configured key nor among MEMVAULT_ENCRYPTION_OLD_KEYS; "
                    "nothing was read or written"
                ) from None
            if sample != _CHECK:
                raise ConfigurationError("the store's encryption check row is damaged")
            return True

        if self.db.write(check):
            self.column_cipher = cipher
            # Sealed content is not in the full-text index: keyword search is off.
            self.capabilities = dataclasses.replace(self.capabilities, lexical=False, sealed=True)

    def rotate_columns(
        self, key: bytes, progress: Callable[[str, int], None] | None = None
    ) -> dict[str, int]:
        """Seal every memory row and history snapshot under `key` (rows are read with the
        configured keys; plain rows of a store that started encrypting are sealed too).
        Batches of `_ROTATE_BATCH` rows, each one transaction, so the pass can be stopped
        and run again; the check row moves to the new key only once a whole pass found
        nothing left to seal. Returns how many memories and snapshots were written.

        Raises:
            InvalidArgumentError: the store does not encrypt memory content.
            ConflictError: writers kept sealing rows under another key (restart them with
                the new key first).
        """
        if self.column_cipher is None:
            raise InvalidArgumentError(
                "this store does not encrypt memory content: set MEMVAULT_ENCRYPT_CONTENT=1 "
                "and a key first (docs/backends.md#encryption)"
            )
        new = self.column_cipher.with_current(key)
        done = {"memories": 0, "snapshots": 0}
        for _ in range(_ROTATE_PASSES):
            mems = self._rotate_memories(new, progress)
            snaps = self._rotate_snapshots(new, progress)
            done["memories"] += mems
            done["snapshots"] += snaps
            if mems + snaps == 0:
                break
        else:
            raise ConflictError(
                "rows kept arriving under another key while rotating: restart every writer "
                "with the new key as MEMVAULT_ENCRYPTION_KEY (the old one among "
                "MEMVAULT_ENCRYPTION_OLD_KEYS), then run the rotation again"
            )

        def move_check(conn: Conn) -> None:
            conn.execute(
                "UPDATE encryption_check SET key_id = ?, sample = ?, updated_at = ? WHERE id = 1",
                (new.key_id, new.encrypt(_CHECK, _CHECK_WHERE), codec.ts(datetime.now(UTC))),
            )

        self.db.write(move_check)
        self.column_cipher = new
        return done

    def _rotate_pass(
        self,
        kind: str,
        batch: Callable[[int, Conn], tuple[int, int]],
        progress: Callable[[str, int], None] | None,
    ) -> int:
        """Run `batch(after, conn)` (one transaction; returns the last key read, or -1 when
        none was left, and how many rows it sealed) until the table is walked."""
        after, written = 0, 0
        while True:
            last, n = self.db.write(functools.partial(batch, after))
            written += n
            if progress is not None and n:
                progress(kind, n)
            if last < 0:
                return written
            after = last

    def _rotate_memories(self, new: Cipher, progress: Callable[[str, int], None] | None) -> int:
        def batch(after: int, conn: Conn) -> tuple[int, int]:
            rows = conn.execute(
                f"SELECT {codec.MEMORY_SELECT} FROM memories AS m WHERE m.pk > ? "
                "AND (m.enc_key IS NULL OR m.enc_key <> ?) ORDER BY m.pk LIMIT ?",
                (after, new.key_id, _ROTATE_BATCH),
            ).fetchall()
            n = 0
            for row in rows:
                v = codec.memory_values(codec.memory_from_row(row, None, new), new)
                n += conn.execute(
                    "UPDATE memories SET content = ?, content_object = ?, content_z = ?, "
                    "metadata = ?, content_hash = ?, enc_key = ?, search_context = NULL "
                    "WHERE pk = ? AND version = ?",
                    (
                        v["content"],
                        v["content_object"],
                        v["content_z"],
                        v["metadata"],
                        v["content_hash"],
                        v["enc_key"],
                        row[0],
                        v["version"],
                    ),
                ).rowcount
            return (rows[-1][0] if rows else -1), n

        return self._rotate_pass("memories", batch, progress)

    def _rotate_snapshots(self, new: Cipher, progress: Callable[[str, int], None] | None) -> int:
        def batch(after: int, conn: Conn) -> tuple[int, int]:
            rows = conn.execute(
                "SELECT history_id, memory_id, version, snapshot FROM memory_history "
                "WHERE history_id > ? AND snapshot IS NOT NULL ORDER BY history_id LIMIT ?",
                (after, _ROTATE_BATCH),
            ).fetchall()
            n = 0
            for hid, memory_id, version, snap in rows:
                text = snap if isinstance(snap, str) else json.dumps(snap)
                if codec.sealed_snapshot_key(text) == new.key_id:
                    continue
                frozen = codec.open_snapshot(json.loads(text), memory_id, version, new)
                sealed = codec.seal_snapshot(codec.dumps(frozen), memory_id, version, new)
                conn.execute(
                    "UPDATE memory_history SET snapshot = ? WHERE history_id = ?", (sealed, hid)
                )
                n += 1
            return (rows[-1][0] if rows else -1), n

        return self._rotate_pass("snapshots", batch, progress)

    # ------------------------------------------------------------------ hooks
    def _hook_index_new_rows(self, conn: Conn, after_pk: int, count: int) -> None:
        """Index the `count` memory rows past `after_pk` (just inserted) for full-text
        search, or see that they will be."""

    def _hook_vector_value(self, vec: bytes) -> Any:
        """A float32 vector as the driver must bind it."""
        return vec

    def _hook_store_vectors(
        self, conn: Conn, items: Sequence[tuple[int, str, bytes]], replace: bool = False
    ) -> None:
        """Store (memory_pk, user_id, vector) for these memories; with `replace`, any vector
        they have is deleted first (without, they have none)."""
        if replace:
            conn.executemany(
                "DELETE FROM memory_vectors WHERE memory_pk = ?", [(i[0],) for i in items]
            )
        conn.executemany(
            self.sql.insert_vector,
            [
                {"memory_pk": pk, "user_id": user_id, "vector": self._hook_vector_value(vec)}
                for pk, user_id, vec in items
            ],
        )

    def _hook_drop_vectors(self, conn: Conn) -> None:
        """Delete every stored vector (another embedder)."""
        conn.execute("DELETE FROM memory_vectors")

    def _hook_copy_vectors(self, conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write `memory_vectors` rows (seq, memory_pk, user_id, vector) copied from another
        store (`storage.transfer`), each under its `seq`."""
        conn.executemany(
            "INSERT INTO memory_vectors (seq, memory_pk, user_id, vector) VALUES (?, ?, ?, ?)",
            [(seq, pk, user_id, self._hook_vector_value(vec)) for seq, pk, user_id, vec in rows],
        )

    def _hook_new_pks(self, conn: Conn, top: int, mems: Sequence[Memory]) -> dict[str, int]:
        """The keys the rows of `mems` just got (inserted in this order, after `top`)."""
        return dict(conn.execute(self.sql.pks_after, {"pk": top}).fetchall())

    def _hook_pks_value(self, pks: Sequence[int]) -> Any:
        """A list of primary keys as `sql.session_around` binds `:pks`."""
        return list(pks)

    def _hook_vectors_dropped(self) -> None:
        """Every stored vector was deleted (another embedder)."""

    def _hook_purge_batch(self, conn: Conn) -> None:
        """Called first in each purge transaction (servers sharing a database serialise)."""

    def pending_accesses(self, pks: Iterable[int]) -> dict[int, int]:
        return {pk: n for pk, (n, _at) in self.access.peek_many(pks).items()}

    # ------------------------------------------------------------------ helpers
    def _memories(self, rows: Sequence[tuple[Any, ...]]) -> list[Memory]:
        pending = self.access.peek_many(row[0] for row in rows)
        if not pending:
            return [codec.memory_from_row(row, None, self.column_cipher) for row in rows]
        cipher = self.column_cipher
        return [codec.memory_from_row(row, pending.get(row[0]), cipher) for row in rows]

    def _light_rows(
        self,
        conn: Conn,
        user_id: str,
        pks: Sequence[int],
        filters: Filters,
        at: str | None,
        whole: bool = False,
    ) -> dict[int, tuple[Any, ...]]:
        """The scoring columns of the visible rows among `pks`, by pk; with `whole`, the
        full row's columns after them (`queries.LIGHT_WIDTH`)."""
        found: dict[int, tuple[Any, ...]] = {}
        for start in range(0, len(pks), 256):
            chunk = pks[start : start + 256]
            sql, params = self.sql.by_pks(filters, len(chunk), light=True, whole=whole)
            params.update({f"pk_{i}": pk for i, pk in enumerate(chunk)})
            params.update(user_id=user_id, now=at)
            for row in conn.execute(sql, params).fetchall():
                found[row[0]] = row
        return found

    async def _maybe_flush(self) -> None:
        """Write pending access counts when due, on the writer thread; the read that noticed
        does not wait (under load every reader waited behind a 10k-row flush: GET p95 went
        from 3 to 43 ms in bench/bench_rest.py)."""
        if self.access.due() and self.access.claim_flush():

            def flush() -> None:
                try:
                    self.db.try_write(self._flush_access)
                finally:
                    self.access.flush_done()

            self.runner.background(flush)

    def _history_rows(self, mems: Sequence[Memory], change: Change, now: datetime) -> list[Any]:
        """History rows for `mems` at their new versions. The snapshot stays empty while a
        version is the live one (the row itself holds it); `_record_change` fills it in when
        the next version replaces it."""
        at = codec.ts(now)
        return [
            {
                "memory_id": m.memory_id,
                "user_id": m.user_id,
                "version": m.version,
                "operation": change.operation,
                "changed_at": at,
                "actor": change.actor,
                "reason": change.reason,
                "snapshot": None,
            }
            for m in mems
        ]

    def _record_change(
        self, conn: Conn, old: Memory, new: Memory, change: Change, now: datetime
    ) -> None:
        """Write `new` over `old`: the row, the frozen snapshot of `old`, the new history row.

        A creation with no actor and no reason writes no history row (the memory row says it
        all); its row is written here, with its snapshot, when the first change comes. New
        content drops the memory's vector (the service embeds it again)."""
        self._write_row(conn, new)
        if new.content != old.content:
            conn.execute(
                "DELETE FROM memory_vectors WHERE memory_pk = "
                "(SELECT pk FROM memories WHERE memory_id = ?)",
                (new.memory_id,),
            )
            self._recontext(conn, new)
        snap = codec.snapshot(old, self.column_cipher)
        frozen = conn.execute(
            self.sql.freeze_history,
            {"memory_id": old.memory_id, "version": old.version, "snapshot": snap},
        ).rowcount
        if frozen == 0:
            conn.execute(self.sql.insert_history, codec.creation_history(old, snap))
        conn.executemany(self.sql.insert_history, self._history_rows([new], change, now))

    def _live_key(self, conn: Conn, m: Memory) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = conn.execute(
            self.sql.select_live_key,
            {"user_id": m.user_id, "namespace": m.namespace, "key": m.key},
        ).fetchone()
        return row

    def _retire_expired(self, conn: Conn, row: tuple[Any, ...], now: datetime) -> None:
        """Soft-delete an expired row whose key a new memory takes over."""
        old = codec.memory_from_row(row, None, self.column_cipher)
        gone = old.model_copy(update={"deleted_at": now, "version": old.version + 1})
        self._record_change(conn, old, gone, Change("delete", reason="expired; key reused"), now)

    def _insert_rows(
        self,
        conn: Conn,
        mems: Sequence[Memory],
        change: Change,
        now: datetime,
        vectors: Sequence[bytes | None] | None = None,
    ) -> None:
        """Insert new memory rows, their full-text entries (one statement for the whole batch,
        see migration 0002), their vectors and, when an actor or a reason is given, their
        history rows."""
        top = conn.execute(self.sql.max_pk).fetchone()[0]
        contexts = self._contexts(conn, mems)
        rows = [(*codec.memory_row(m, self.column_cipher), contexts.get(m.memory_id)) for m in mems]
        if self.sql.insert_memory_positional is not None:
            conn.executemany(*self.sql.insert_rows(rows))
        else:
            names = (*codec.INSERT_COLUMNS, "search_context")
            conn.executemany(
                self.sql.insert_memory, [dict(zip(names, r, strict=True)) for r in rows]
            )
        self._hook_index_new_rows(conn, top, len(rows))
        if vectors is not None and any(v is not None for v in vectors):
            pks = self._hook_new_pks(conn, top, mems)
            self._hook_store_vectors(
                conn,
                [
                    (pks[m.memory_id], m.user_id, vec)
                    for m, vec in zip(mems, vectors, strict=True)
                    if vec is not None
                ],
            )
        if change.actor is not None or change.reason is not None:
            conn.executemany(self.sql.insert_history, self._history_rows(mems, change, now))

    def _contexts(self, conn: Conn, mems: Sequence[Memory]) -> dict[str, str | None]:
        """Search context of new memories said in a conversation (`session_id` set), and
        the refreshed context of the earlier memories of that conversation they follow."""
        out: dict[str, str | None] = {}
        if self.column_cipher is not None:
            return out  # sealed content has no search context (it would be plain text)
        groups: dict[tuple[str, str], list[Memory]] = {}
        for m in mems:
            if m.session_id is not None:
                groups.setdefault((m.user_id, m.session_id), []).append(m)
            else:
                out[m.memory_id] = search_context([content_text(m.content)], 0, False)
        for (user_id, session_id), group in groups.items():
            before = conn.execute(
                self.sql.session_tail,
                {"user_id": user_id, "session_id": session_id, "n": 2 * CONTEXT_WINDOW},
            ).fetchall()[::-1]
            texts = [r[1] for r in before] + [content_text(m.content) for m in group]
            for i, (pk, _text, old) in enumerate(before):
                if i >= len(before) - CONTEXT_WINDOW:
                    ctx = search_context(texts, i, True)
                    if ctx != old:
                        conn.execute(self.sql.set_context, {"pk": pk, "ctx": ctx})
            for j, m in enumerate(group):
                out[m.memory_id] = search_context(texts, len(before) + j, True)
        return out

    def _recontext(self, conn: Conn, m: Memory) -> None:
        """The search context of `m` after its content changed (its neighbours keep theirs
        until `memvault reindex --lexical`)."""
        if self.column_cipher is not None:
            return
        pk = conn.execute("SELECT pk FROM memories WHERE memory_id = ?", (m.memory_id,)).fetchone()
        if pk is None:
            return
        text = content_text(m.content)
        if m.session_id is None:
            ctx = search_context([text], 0, False)
        else:
            around = conn.execute(
                "SELECT pk, content FROM memories WHERE user_id = ? AND session_id = ? "
                "AND deleted_at IS NULL AND pk BETWEEN ? AND ? ORDER BY pk",
                (m.user_id, m.session_id, pk[0] - 64, pk[0] + 64),
            ).fetchall()
            at = next((i for i, r in enumerate(around) if r[0] == pk[0]), None)
            if at is None:
                return
            lo = max(0, at - CONTEXT_WINDOW)
            texts = [r[1] for r in around[lo : at + CONTEXT_WINDOW + 1]]
            texts[at - lo] = text
            ctx = search_context(texts, at - lo, True)
        conn.execute(self.sql.set_context, {"pk": pk[0], "ctx": ctx})

    def _refresh_contexts(self, conn: Conn) -> int:
        """Recompute every live memory's search context (after edits); returns how many
        changed."""
        changed = 0
        if self.column_cipher is not None:
            return changed
        rows = conn.execute(
            "SELECT pk, user_id, session_id, content, search_context FROM memories "
            "WHERE deleted_at IS NULL ORDER BY user_id, session_id, pk"
        ).fetchall()
        for pk, ctx in fresh_contexts(rows):
            conn.execute(self.sql.set_context, {"pk": pk, "ctx": ctx})
            changed += 1
        return changed

    def _write_row(self, conn: Conn, m: Memory) -> None:
        values = codec.memory_values(m, self.column_cipher)
        values["b_memory_id"] = m.memory_id
        conn.execute(self.sql.update_memory, values)

    # ------------------------------------------------------------------ memories
    async def insert_memories(
        self,
        memories: Sequence[Memory],
        change: Change,
        now: datetime,
        vectors: Sequence[bytes | None] | None = None,
        merges: Sequence[Merge] = (),
        job: JobDone | None = None,
    ) -> list[Memory]:
        def run(conn: Conn) -> list[Memory]:
            at = codec.ts(now)
            if job is not None:
                finish_job(conn, job, now)
            merged = [self._merge(conn, mg, now) for mg in merges]
            if not memories:
                return merged
            for user_id in {m.user_id for m in memories}:
                self._ensure_user(conn, user_id, None, at)
            for m in memories:
                if m.key == m.memory_id:
                    continue  # generated key: unique by construction
                row = self._live_key(conn, m)
                if row is None:
                    continue
                if codec.memory_from_row(row, None, self.column_cipher).is_expired(now):
                    self._retire_expired(conn, row, now)
                else:
                    raise ConflictError(
                        f"key {m.key!r} already exists in namespace {m.namespace!r}",
                        {"namespace": m.namespace, "key": m.key, "memory_id": row[1]},
                    )
            self._insert_rows(conn, memories, change, now, vectors)
            return [*memories, *merged]

        result: list[Memory] = await self._write(run)
        return result

    def _merge(self, conn: Conn, mg: Merge, now: datetime) -> Memory:
        row = conn.execute(
            self.sql.select_by_id, {"user_id": mg.user_id, "memory_id": mg.memory_id}
        ).fetchone()
        if row is None or row[_DELETED_AT] is not None:
            raise ConflictError(
                f"memory {mg.memory_id!r} changed while a duplicate was merged into it; retry",
                {"memory_id": mg.memory_id},
            )
        current = self._memories([row])[0]
        new = mg.fn(current)
        self._record_change(conn, current, new, mg.change, now)
        if mg.vector is not None:
            self._hook_store_vectors(conn, [(row[0], mg.user_id, mg.vector)], replace=True)
        return new

    async def fetch(self, user_id: str, memory_ids: Sequence[str], now: datetime) -> list[Memory]:
        at = codec.ts(now)
        assert at is not None

        def run(conn: Conn) -> list[Memory]:
            if len(memory_ids) == 1:
                rows = conn.execute(
                    self.sql.select_by_id, {"user_id": user_id, "memory_id": memory_ids[0]}
                ).fetchall()
            else:
                params: dict[str, Any] = {f"id_{i}": v for i, v in enumerate(memory_ids)}
                params["user_id"] = user_id
                rows = conn.execute(self.sql.select_by_ids(len(memory_ids)), params).fetchall()
            out = []
            for row in rows:
                if row[_DELETED_AT] is not None or (
                    row[_EXPIRES_AT] is not None and row[_EXPIRES_AT] <= at
                ):
                    continue
                out.append(
                    codec.memory_from_row(row, self.access.note(row[0], at), self.column_cipher)
                )
            return out

        found: list[Memory] = await self._point_read(run)
        await self._maybe_flush()
        return found

    async def fetch_any(self, user_id: str, memory_id: str) -> Memory | None:
        """The row whatever its state (deleted, expired); no access is counted."""

        def run(conn: Conn) -> Memory | None:
            row = conn.execute(
                self.sql.select_by_id, {"user_id": user_id, "memory_id": memory_id}
            ).fetchone()
            return None if row is None else self._memories([row])[0]

        result: Memory | None = await self._read(run)
        return result

    async def mutate(
        self, user_id: str, memory_id: str, fn: MemoryChange, change: Change, now: datetime
    ) -> Memory:
        def run(conn: Conn) -> Memory:
            row = conn.execute(
                self.sql.select_by_id, {"user_id": user_id, "memory_id": memory_id}
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no memory {memory_id!r} for user {user_id!r}", {"memory_id": memory_id}
                )
            current = self._memories([row])[0]
            new = fn(current)
            if new.deleted_at is None and current.deleted_at is not None:
                holder = self._live_key(conn, new)
                if holder is not None and holder[1] != memory_id:
                    if codec.memory_from_row(holder, None, self.column_cipher).is_expired(now):
                        self._retire_expired(conn, holder, now)
                    else:
                        raise ConflictError(
                            f"cannot restore: key {new.key!r} in namespace {new.namespace!r} "
                            "is now used by another memory",
                            {"memory_id": holder[1], "key": new.key},
                        )
            self._record_change(conn, current, new, change, now)
            return new

        result: Memory = await self._write(run)
        return result

    async def upsert(
        self, new: Memory, fn: MemoryChange, change: Change, now: datetime
    ) -> tuple[Memory, bool]:
        def run(conn: Conn) -> tuple[Memory, bool]:
            self._ensure_user(conn, new.user_id, None, codec.ts(now))
            row = self._live_key(conn, new)
            if row is not None:
                current = self._memories([row])[0]
                if not current.is_expired(now):
                    updated = fn(current)
                    if updated == current:
                        return current, False
                    self._record_change(conn, current, updated, change, now)
                    return updated, False
                self._retire_expired(conn, row, now)
            self._insert_rows(conn, [new], Change("create", change.actor, change.reason), now)
            return new, True

        result: tuple[Memory, bool] = await self._write(run)
        return result

    async def query(
        self,
        user_id: str,
        filters: Filters,
        order: str,
        cursor: str | None,
        limit: int,
        now: datetime,
    ) -> tuple[list[Memory], str | None]:
        after = None if cursor is None else decode_cursor(cursor, order)
        if self.column_cipher is not None and filters.metadata:
            return await self._query_sealed(user_id, filters, order, after, limit, now)
        sql, params = self.sql.listing(filters, order, after, limit + 1)
        params["user_id"] = user_id
        params["now"] = codec.ts(now)

        def run(conn: Conn) -> tuple[list[Memory], str | None]:
            rows = conn.execute(sql, params).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            next_cursor = None
            if more and rows:
                next_cursor = _cursor_after(order, rows[-1])
            return self._memories(rows), next_cursor

        result: tuple[list[Memory], str | None] = await self._read(run)
        return result

    async def _query_sealed(
        self,
        user_id: str,
        filters: Filters,
        order: str,
        after: tuple[Any, int] | None,
        limit: int,
        now: datetime,
    ) -> tuple[list[Memory], str | None]:
        """A listing with metadata filters on a sealed store: the rows the other filters
        let through, a page at a time, opened and matched in Python (`meta_match`)."""
        wanted = filters.metadata or {}
        plain = filters.model_copy(update={"metadata": None})
        cipher = self.column_cipher
        at = codec.ts(now)

        def run(conn: Conn) -> tuple[list[Memory], str | None]:
            kept: list[tuple[Any, ...]] = []
            position = after
            while len(kept) <= limit:
                sql, params = self.sql.listing(plain, order, position, _SEALED_PAGE)
                params.update(user_id=user_id, now=at)
                rows = conn.execute(sql, params).fetchall()
                for row in rows:
                    meta = (
                        codec.unseal(cipher, row[1], row[_CONTENT_Z])[1]
                        if row[_ENC_KEY] is not None
                        else codec.loads_obj(row[_METADATA])
                    )
                    if metadata_matches(meta, wanted):
                        kept.append(row)
                        if len(kept) > limit:
                            break
                if len(rows) < _SEALED_PAGE:
                    break
                position = decode_cursor(_cursor_after(order, rows[-1]), order)
            more = len(kept) > limit
            kept = kept[:limit]
            next_cursor = _cursor_after(order, kept[-1]) if more and kept else None
            return self._memories(kept), next_cursor

        result: tuple[list[Memory], str | None] = await self._read(run)
        return result

    async def find_by_hash(
        self, user_id: str, namespace: str, content_hash: str, now: datetime
    ) -> Memory | None:
        found = await self.find_by_hashes(user_id, [(namespace, content_hash)], now)
        return found.get((namespace, content_hash))

    async def find_by_hashes(
        self, user_id: str, wanted: Sequence[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], Memory]:
        """The oldest live memory of each (namespace, content hash) pair that has one, in
        one read of one short statement a pair, whose index walk stops at the pair's first
        live row. One statement for the batch (`content_hash IN (...)`) was 8 us a fact
        faster in bench/bench_store.py --memory-type fact (87-89 against 95-99 us) but read
        every row of a hash: a fact repeating 20,000 stored notes took 80 ms to add (9 ms
        with GROUP BY min(pk)), 0.46 ms this way."""
        at = codec.ts(now)
        cipher = self.column_cipher
        lookups: list[tuple[tuple[str, str], str]] = []  # (pair, hash as stored)
        for pair in dict.fromkeys(wanted):
            if cipher is None:
                lookups.append((pair, pair[1]))
            else:  # a sealed store keys its hashes: each key a row may still be sealed with
                lookups += [(pair, cipher.keyed_hash(pair[1], kid)) for kid in cipher.key_ids()]

        def run(conn: Conn) -> dict[tuple[str, str], tuple[Any, ...]]:
            found: dict[tuple[str, str], tuple[Any, ...]] = {}
            for pair, stored in lookups:
                if pair in found:
                    continue  # found under an earlier key
                row = conn.execute(
                    f"SELECT {codec.MEMORY_SELECT} FROM memories AS m WHERE m.user_id = ? "
                    "AND m.content_hash = ? AND m.namespace = ? AND m.deleted_at IS NULL "
                    "AND (m.expires_at IS NULL OR m.expires_at > ?) "
                    "AND (m.valid_to IS NULL OR m.valid_to > ?) ORDER BY m.pk LIMIT 1",
                    (user_id, stored, pair[0], at, at),
                ).fetchone()
                if row is not None:
                    found[pair] = row
            return found

        rows: dict[tuple[str, str], tuple[Any, ...]] = await self._read(run)
        if not rows:
            return {}
        pairs = list(rows)
        return dict(zip(pairs, self._memories([rows[p] for p in pairs]), strict=True))

    async def hits(
        self,
        user_id: str,
        pks: Sequence[int],
        now: datetime,
        *,
        count_access: bool = True,
        read: Mapping[int, tuple[Any, ...]] | None = None,
    ) -> dict[int, Memory]:
        at = codec.ts(now)
        assert at is not None
        if not pks:
            return {}
        # Rows this search read whole already (a vector-only search) are not read again:
        # they passed the same visibility test a moment ago, in this call.
        known = [read[pk] for pk in pks if pk in read] if read else []
        missing = [pk for pk in pks if pk not in read] if read else list(pks)

        def run(conn: Conn) -> dict[int, Memory]:
            sql, params = self.sql.by_pks(_WINNERS, len(missing))
            params.update({f"pk_{i}": pk for i, pk in enumerate(missing)})
            params.update(user_id=user_id, now=at)
            return self._hit_rows(known + conn.execute(sql, params).fetchall(), at, count_access)

        result: dict[int, Memory] = (
            await self._point_read(run) if missing else self._hit_rows(known, at, count_access)
        )
        await self._maybe_flush()
        return result

    def _hit_rows(
        self, rows: list[tuple[Any, ...]], at: str, count_access: bool
    ) -> dict[int, Memory]:
        if not count_access:
            return {r[0]: m for r, m in zip(rows, self._memories(rows), strict=True)}
        cipher = self.column_cipher
        counts = self.access.note_many([row[0] for row in rows], at)  # a hit is an access
        return {
            row[0]: codec.memory_from_row(row, count, cipher)
            for row, count in zip(rows, counts, strict=True)
        }

    async def history(self, user_id: str, memory_id: str) -> list[HistoryEntry]:
        def run(conn: Conn) -> list[HistoryEntry]:
            rows = conn.execute(
                self.sql.select_history, {"user_id": user_id, "memory_id": memory_id}
            ).fetchall()
            if rows and rows[-1][-1] is not None:  # every version frozen (rows before 0002)
                return [codec.history_from_row(r, None, self.column_cipher) for r in rows]
            row = conn.execute(
                self.sql.select_by_id, {"user_id": user_id, "memory_id": memory_id}
            ).fetchone()
            if row is None:
                return []
            mem = codec.memory_from_row(row, None, self.column_cipher)
            live = codec.snapshot_dict(mem)
            if not rows:  # never changed, created without actor or reason
                return [codec.creation_entry(mem, live)]
            return [codec.history_from_row(r, live, self.column_cipher) for r in rows]

        result: list[HistoryEntry] = await self._read(run)
        return result

    async def purge(self, now: datetime, deleted_before: datetime) -> PurgeCounts:
        at, cutoff = codec.ts(now), codec.ts(deleted_before)

        def batch(conn: Conn) -> tuple[int, int]:
            self._hook_purge_batch(conn)
            rows = conn.execute(
                "SELECT pk, memory_id, deleted_at IS NULL FROM memories WHERE "
                "(expires_at IS NOT NULL AND expires_at <= ?) OR "
                "(deleted_at IS NOT NULL AND deleted_at <= ?) LIMIT 1000",
                (at, cutoff),
            ).fetchall()
            conn.executemany(
                "DELETE FROM memory_history WHERE memory_id = ?", [(r[1],) for r in rows]
            )
            conn.executemany("DELETE FROM memories WHERE pk = ?", [(r[0],) for r in rows])
            expired = sum(1 for r in rows if r[2])
            return expired, len(rows) - expired

        expired = deleted = 0
        while True:
            e, d = await self._write(batch)
            expired, deleted = expired + e, deleted + d
            if e + d < 1000:
                return PurgeCounts(expired, deleted)

    async def count_memories(self, user_id: str | None, now: datetime) -> int:
        at = codec.ts(now)

        def run(conn: Conn) -> int:
            where = "deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"
            if user_id is None:
                row = conn.execute(f"SELECT count(*) FROM memories WHERE {where}", (at,))
            else:
                row = conn.execute(
                    f"SELECT count(*) FROM memories WHERE user_id = ? AND {where}", (user_id, at)
                )
            return int(row.fetchone()[0])

        result: int = await self._read(run)
        return result

    async def store_stats(self, user_id: str | None, since: datetime, now: datetime) -> StoreStats:
        at, start = codec.ts(now), codec.ts(since)
        day = (
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            if self.sql.pg
            else "substr(created_at, 1, 10)"
        )
        mine = "" if user_id is None else " AND user_id = :u"

        def count(conn: Conn, sql: str, **params: Any) -> int:
            return int(conn.execute(sql, {"u": user_id, **params}).fetchone()[0])

        def run(conn: Conn) -> StoreStats:
            users = count(
                conn,
                "SELECT count(*) FROM users" + ("" if user_id is None else " WHERE user_id = :u"),
            )
            live = count(
                conn,
                "SELECT count(*) FROM memories WHERE deleted_at IS NULL "
                "AND (expires_at IS NULL OR expires_at > :at)" + mine,
                at=at,
            )
            deleted = count(
                conn, "SELECT count(*) FROM memories WHERE deleted_at IS NOT NULL" + mine
            )
            where = "" if user_id is None else " WHERE user_id = :u"
            messages = count(conn, "SELECT count(*) FROM messages" + where)
            sessions = count(conn, "SELECT count(*) FROM sessions" + where)
            rows = conn.execute(
                f"SELECT {day} AS d, count(*) FROM memories WHERE created_at >= :since{mine} "
                "GROUP BY d ORDER BY d",
                {"since": start, "u": user_id},
            ).fetchall()
            return StoreStats(
                users, live, deleted, messages, sessions, [(str(d), int(n)) for d, n in rows]
            )

        result: StoreStats = await self._read(run)
        return result

    # ------------------------------------------------------------------ lifecycle
    # ------------------------------------------------------------------ vectors
    async def vector_model(self) -> tuple[str, int] | None:
        def run(conn: Conn) -> tuple[str, int] | None:
            row = conn.execute("SELECT model, dimension FROM vector_index WHERE id = 1").fetchone()
            return None if row is None else (str(row[0]), int(row[1]))

        result: tuple[str, int] | None = await self._read(run)
        return result

    async def set_vector_model(self, model: str, dimension: int, now: datetime) -> bool:
        """Record the embedder of the index. When another one was recorded, every stored
        vector is dropped (they cannot be compared) and True is returned."""

        def run(conn: Conn) -> bool:
            row = conn.execute("SELECT model, dimension FROM vector_index WHERE id = 1").fetchone()
            if row is not None and (row[0], row[1]) == (model, dimension):
                return False
            self._hook_drop_vectors(conn)
            conn.execute(
                "INSERT INTO vector_index (id, model, dimension, created_at) "
                "VALUES (1, :m, :d, :at) ON CONFLICT (id) DO UPDATE SET model = excluded.model, "
                "dimension = excluded.dimension, created_at = excluded.created_at",
                {"m": model, "d": dimension, "at": codec.ts(now)},
            )
            return row is not None

        changed: bool = await self._write(run)
        self._hook_vectors_dropped()
        return changed

    async def put_vectors(self, user_id: str, items: Sequence[tuple[str, bytes]]) -> int:
        """Set the vectors of these memories of `user_id` (by memory id); returns how many
        memories still existed."""

        def run(conn: Conn) -> int:
            found: dict[int, bytes] = {}  # by memory key: a memory given twice takes the last
            for memory_id, vec in items:
                row = conn.execute(
                    "SELECT pk FROM memories WHERE user_id = ? AND memory_id = ?",
                    (user_id, memory_id),
                ).fetchone()
                if row is not None:
                    found[row[0]] = vec
            if found:
                self._hook_store_vectors(
                    conn, [(pk, user_id, vec) for pk, vec in found.items()], replace=True
                )
            return len(found)

        result: int = await self._write(run)
        return result

    async def missing_vectors(
        self, after_pk: int, limit: int, user_id: str | None
    ) -> list[tuple[int, str, str, str]]:
        """(pk, user_id, memory_id, text) of live memories with no vector, by pk."""

        def run(conn: Conn) -> list[tuple[int, str, str, str]]:
            where = "AND m.user_id = :u " if user_id is not None else ""
            rows = conn.execute(
                "SELECT m.pk, m.user_id, m.memory_id, m.content, m.enc_key, m.content_z "
                "FROM memories m "
                "WHERE m.pk > :after AND m.deleted_at IS NULL " + where + "AND NOT EXISTS "
                "(SELECT 1 FROM memory_vectors v WHERE v.memory_pk = m.pk) "
                "ORDER BY m.pk LIMIT :n",
                {"after": after_pk, "n": limit, "u": user_id},
            ).fetchall()
            out = []
            for r in rows:
                text = r[3]
                if r[4] is not None:  # sealed: the text the embedder reads of a plain row
                    body = codec.unseal(self.column_cipher, r[2], r[5])[0]
                    text = content_text(body)[:COMPRESS_CONTENT_FROM]
                out.append((int(r[0]), str(r[1]), str(r[2]), str(text)))
            return out

        result: list[tuple[int, str, str, str]] = await self._read(run)
        return result

    async def count_missing_vectors(self, user_id: str | None) -> int:
        def run(conn: Conn) -> int:
            where = "AND m.user_id = :u " if user_id is not None else ""
            row = conn.execute(
                "SELECT count(*) FROM memories m WHERE m.deleted_at IS NULL " + where + "AND "
                "NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.memory_pk = m.pk)",
                {"u": user_id},
            ).fetchone()
            return int(row[0])

        result: int = await self._read(run)
        return result

    async def neighbours(
        self, user_id: str, pks: Sequence[int], filters: Filters, now: datetime
    ) -> dict[int, list[Candidate]]:
        at = codec.ts(now)
        if not pks:
            return {}

        def run(conn: Conn) -> dict[int, list[Candidate]]:
            around: dict[int, list[int]] = {pk: [] for pk in pks}
            params = {"user_id": user_id, "pks": self._hook_pks_value([int(p) for p in pks])}
            for pk, before, after in conn.execute(self.sql.session_around, params):
                around[pk] = [int(n) for n in (before, after) if n is not None]
            wanted = sorted({n for ns in around.values() for n in ns})
            light = {
                pk: _candidate(r)
                for pk, r in self._light_rows(conn, user_id, wanted, filters, at).items()
            }
            return {pk: [light[n] for n in ns if n in light] for pk, ns in around.items()}

        result: dict[int, list[Candidate]] = await self._read(run)
        return result

    async def flush(self) -> None:
        await self.runner.write(self.db.write, self._flush_access)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.flush()
        except UnavailableError:
            pass  # counts are best effort; the data itself is already committed
        finally:
            self._closed = True
            self.runner.close()
            self.db.close()

    def close_now(self) -> None:
        """Close from outside any event loop (used by finalizers)."""
        if self._closed:
            return
        with contextlib.suppress(UnavailableError):
            self.db.write(self._flush_access)
        self._closed = True
        self.runner.close()
        self.db.close()


__all__ = ["SqlBackend"]
