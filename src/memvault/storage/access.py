"""Access tracking without a write per read.

Reads note (count, last time) in memory; the counts reach storage in one batched
`access_count = access_count + n` statement when enough are pending, when the flush interval
has passed, and on close. Adding, not overwriting, means several processes never lose each
other's counts. Until a flush, this process's readers see its own pending counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Pending:
    count: int
    last_at: str


class AccessTracker:
    def __init__(self, *, max_pending: int, interval_s: float) -> None:
        self.max_pending = max_pending
        self.interval_s = interval_s
        self._pending: dict[int, Pending] = {}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._flushing = False

    def claim_flush(self) -> bool:
        """True for the one caller that should schedule a flush now (False while one is
        already queued)."""
        with self._lock:
            if self._flushing:
                return False
            self._flushing = True
            return True

    def flush_done(self) -> None:
        with self._lock:
            self._flushing = False

    def note(self, pk: int, at: str) -> tuple[int, str]:
        """Count one access of row `pk` at `at`; return the row's pending (count, last time)."""
        return self.note_many((pk,), at)[0]

    def note_many(self, pks: Iterable[int], at: str) -> list[tuple[int, str]]:
        """`note` for each of `pks` in turn, under one lock (a search's hits)."""
        out = []
        with self._lock:
            pending = self._pending
            for pk in pks:
                entry = pending.get(pk)
                if entry is None:
                    pending[pk] = Pending(1, at)
                    out.append((1, at))
                else:
                    entry.count += 1
                    entry.last_at = max(entry.last_at, at)
                    out.append((entry.count, entry.last_at))
        return out

    def peek_many(self, pks: Iterable[int]) -> dict[int, tuple[int, str]]:
        """Pending (count, last time) of those of `pks` that have any."""
        with self._lock:
            pending = self._pending
            if not pending:
                return {}
            return {pk: (e.count, e.last_at) for pk in pks if (e := pending.get(pk)) is not None}

    def due(self) -> bool:
        with self._lock:
            if not self._pending:
                return False
            return (
                len(self._pending) >= self.max_pending
                or time.monotonic() - self._last_flush >= self.interval_s
            )

    def take(self) -> dict[int, Pending]:
        with self._lock:
            taken, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            return taken

    def give_back(self, taken: dict[int, Pending]) -> None:
        """Return counts whose flush failed, so they are written next time."""
        with self._lock:
            for pk, entry in taken.items():
                cur = self._pending.get(pk)
                if cur is None:
                    self._pending[pk] = entry
                else:
                    cur.count += entry.count
                    cur.last_at = max(cur.last_at, entry.last_at)
