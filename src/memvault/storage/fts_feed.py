"""The SQLite full-text index, fed in batches of about `FEED_AFTER` rows (migration 0012).

FTS5 pays much of its cost per statement that feeds it (it writes a segment and merges
segments), so indexing each 100-row batch of new memories as it was written cost about
15 us a memory, and indexing ten such batches at once about 5 (raw statements, the peer
benchmark's texts). The writer therefore leaves new rows waiting and feeds the index once
`FEED_AFTER` rows wait, in the same transaction; what is indexed is always a prefix of the
rows, every row up to the watermark (the largest rowid FTS5 keeps a document size for) and
none above it.

A lexical search first asks whether a row of its user waits (`waiting_for`, one index
probe) and, if one does, feeds the index (`feed`, in a write transaction of its own) before
it reads: a search sees every committed memory, as when the writer indexed each batch. A
store feeds what waits when it closes, so nothing is left for another version to find.
"""

from __future__ import annotations

from memvault.storage.sql.dbapi import Conn

FEED_AFTER = 1000  # the writer feeds the index once this many rows wait (an upper bound)
WATERMARK = "SELECT coalesce(max(id), 0) FROM memories_fts_docsize"
_FEED = (
    "INSERT INTO memories_fts(rowid, content, tags, search_context, owner) "
    "SELECT pk, content, tags, search_context, 'u' || lower(hex(user_id)) "
    "FROM memories NOT INDEXED WHERE pk > ? ORDER BY pk"
)
# NOT INDEXED: by the rowids past the watermark (a few), never by an index of the user's
# rows (the planner took one, all 100,000 rows of a big user, once the store was analysed)
_WAITING = f"SELECT 1 FROM memories NOT INDEXED WHERE pk > ({WATERMARK})"
_WAITING_FOR = f"{_WAITING} AND user_id = ? LIMIT 1"


def feed(conn: Conn) -> int:
    """Index every waiting row (in the caller's write transaction); how many."""
    mark = conn.execute(WATERMARK).fetchone()[0]
    return int(conn.execute(_FEED, (mark,)).rowcount)


def feed_if_due(conn: Conn, top: int) -> int:
    """What the writer calls after inserting rows up to rowid `top`: `feed` once about
    `FEED_AFTER` rows wait (rowids above the watermark; deleted ones count too)."""
    if top - conn.execute(WATERMARK).fetchone()[0] < FEED_AFTER:
        return 0
    return feed(conn)


def waiting(conn: Conn) -> bool:
    """Whether any row waits for the index."""
    return conn.execute(f"{_WAITING} LIMIT 1").fetchone() is not None


def waiting_for(conn: Conn, user_id: str) -> bool:
    """Whether a row of `user_id` waits for the index."""
    return conn.execute(_WAITING_FOR, (user_id,)).fetchone() is not None


__all__ = ["FEED_AFTER", "feed", "feed_if_due", "waiting", "waiting_for"]
