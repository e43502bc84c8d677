"""A read cache that never serves changed data (seed 004's LRU with time-based expiry).

Entries are bounded by count and bytes and expire `ttl_s` after they were stored. Before
every cached read, the cache asks storage whether anything was committed since it last
looked (`Backend.data_changed`, a shared-memory read on SQLite); when something was, it reads the
change feed (memories changed, users erased: `Backend.changes_since`) and drops every entry
they touch: the memory itself, every batch read holding it and every search of its user (a
new memory drops its user's searches).
So a change through any door (REST, the library, another process on the same database)
is never served from here. Only the access counters inside a cached memory may lag: a read
answered from the cache is not counted as an access.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from memvault.storage.base import Backend
from memvault.storage.runner import drive


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0
    invalidations: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Entry:
    value: Any
    size: int
    expires: float
    user_id: str
    memory_ids: frozenset[str]
    encoded: bytes | None = None  # the value as JSON, made by the first `peek_now`


@dataclass
class ReadCache:
    """LRU with expiry, bounded by `max_entries` and `max_bytes`, kept coherent with storage."""

    backend: Backend
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    ttl_s: float = 300.0
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        # The orchestrator's worker threads share one cache; storage runs inline on each
        # (its coroutines never suspend), so a plain lock may be held across the awaits.
        self._lock = threading.RLock()
        self._items: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._by_memory: dict[str, set[Hashable]] = {}
        self._by_user: dict[str, set[Hashable]] = {}
        self._bytes = 0
        self._history_id = 0
        self._audit_id = 0
        self._memory_pk = 0
        self._epoch = 0
        self._primed = False

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    async def sync(self) -> None:
        """Drop whatever storage says changed since the last call."""
        with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        if not await self.backend.data_changed() and self._primed:
            return
        await self._catch_up()

    async def _catch_up(self) -> None:
        if not self._primed:  # the first look only learns where the feed is
            at = await self.backend.change_position()
            self._history_id, self._audit_id, self._memory_pk = (
                at.history_id,
                at.audit_id,
                at.memory_pk,
            )
            self._primed = True
            return
        while True:
            feed = await self.backend.changes_since(
                self._history_id, self._audit_id, self._memory_pk
            )
            for user_id, memory_id in feed.memories:
                self._drop_memory(memory_id)
                self._drop_user_searches(user_id)
            for user_id in feed.users:
                self._drop_user(user_id)
            if feed.reset:
                for key in list(self._items):
                    self._remove(key)
                    self.stats.invalidations += 1
            if feed.memories or feed.users or feed.reset:
                self._epoch += 1
            self._history_id, self._audit_id, self._memory_pk = (
                feed.history_id,
                feed.audit_id,
                feed.memory_pk,
            )
            if not feed.truncated:
                return

    async def get_or_load(
        self,
        key: Hashable,
        user_id: str,
        load: Callable[[], Awaitable[tuple[Any, frozenset[str], int]]],
    ) -> Any:
        """The cached value of `key`, or `load()`'s (value, memory ids it holds, size in
        bytes), stored unless a change arrived while it was loading."""
        with self._lock:
            await self._sync()
            entry = self._items.get(key)
            now = time.monotonic()
            if entry is not None:
                if entry.expires > now:
                    self._items.move_to_end(key)
                    self.stats.hits += 1
                    return entry.value
                self._remove(key)
                self.stats.expirations += 1
            self.stats.misses += 1
            epoch = self._epoch
        value, memory_ids, size = await load()
        with self._lock:
            await self._sync()
            if epoch == self._epoch and size <= self.max_bytes:
                self._put(key, _Entry(value, size, now + self.ttl_s, user_id, memory_ids))
        return value

    def peek_now(
        self, key: Hashable, changed_now: Callable[[], bool], encode: Callable[[Any], bytes]
    ) -> bytes | None:
        """The cached, fresh value of `key` as JSON bytes (`encode`d once, then kept with
        it; counted as a hit), or None (counting nothing: the caller goes on to
        `get_or_load`). For a thread that must not wait: no coroutine. `changed_now` is the
        backend's local `data_changed` (SQLite's WAL index header); when it says something changed,
        the change feed is read here too (on SQLite, a local read), before anything is
        served."""
        with self._lock:
            if changed_now() or not self._primed:
                drive(self._catch_up())
            entry = self._items.get(key)
            if entry is None or entry.expires <= time.monotonic():
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            if entry.encoded is None:
                entry.encoded = encode(entry.value)
            return entry.encoded

    def invalidate_user(self, user_id: str) -> None:
        """Drop every entry of a user."""
        with self._lock:
            self._drop_user(user_id)
            self._epoch += 1

    def _put(self, key: Hashable, entry: _Entry) -> None:
        if key in self._items:
            self._remove(key)
        self._items[key] = entry
        self._bytes += entry.size
        for mid in entry.memory_ids:
            self._by_memory.setdefault(mid, set()).add(key)
        self._by_user.setdefault(entry.user_id, set()).add(key)
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._remove(oldest)
            self.stats.evictions += 1

    def _remove(self, key: Hashable) -> None:
        entry = self._items.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.size
        for mid in entry.memory_ids:
            keys = self._by_memory.get(mid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_memory[mid]
        keys = self._by_user.get(entry.user_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[entry.user_id]

    def _drop_memory(self, memory_id: str) -> None:
        for key in list(self._by_memory.get(memory_id, ())):
            self._remove(key)
            self.stats.invalidations += 1

    def _drop_user_searches(self, user_id: str) -> None:
        for key in list(self._by_user.get(user_id, ())):
            if isinstance(key, tuple) and key and key[0] == "search":
                self._remove(key)
                self.stats.invalidations += 1

    def _drop_user(self, user_id: str) -> None:
        for key in list(self._by_user.get(user_id, ())):
            self._remove(key)
            self.stats.invalidations += 1
