"""The storage contract. Every read and write is scoped by `user_id`.

Rules live in the service; a backend applies them atomically. Where a change depends on the
stored state (an update with a version check, an upsert, a streak), the service passes a
pure function that the backend calls inside its transaction with the current record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from memvault.models import (
    ApiKey,
    AuditEntry,
    ContextEntry,
    Filters,
    HistoryEntry,
    Job,
    Memory,
    Message,
    Metrics,
    Session,
    Summary,
    User,
)

MemoryChange = Callable[[Memory], Memory]
"""Given the stored memory, return what it becomes (or raise a MemvaultError)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do natively; the service takes another path where it cannot."""

    lexical: bool = False
    vector: bool = False
    listen_notify: bool = False
    transactions: bool = True
    # Memory content and metadata are encrypted in the store (no keyword search, and search
    # takes no metadata filters).
    sealed: bool = False
    # `data_changed` is answered without a round trip (SQLite: one pragma), so a cache may
    # check it on a thread that must never wait.
    local_change_check: bool = False


@dataclass(frozen=True)
class StoreStats:
    """What a store holds: users, live and deleted memories, messages, sessions, and the
    memories created on each UTC day since a date (`(YYYY-MM-DD, count)`, oldest first)."""

    users: int
    memories: int
    deleted: int
    messages: int
    sessions: int
    created_by_day: list[tuple[str, int]]


@dataclass(frozen=True)
class Change:
    """How a history row describes a change."""

    operation: str
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Merge:
    """A new memory folded into a live one (dedup), applied in the same transaction as the
    batch's inserts."""

    user_id: str
    memory_id: str
    fn: MemoryChange
    change: Change
    vector: bytes | None = None


@dataclass(frozen=True)
class JobDone:
    """A leased job to mark done in the transaction of its writes (`insert_memories`)."""

    job_id: str
    token: str
    result: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


@dataclass
class Restore:
    """Archived records to put back as they were (`Backend.restore`)."""

    users: list[User] = field(default_factory=list)
    memories: list[Memory] = field(default_factory=list)
    history: list[tuple[str, HistoryEntry]] = field(default_factory=list)  # (user_id, entry)
    messages: list[Message] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    metrics: list[Metrics] = field(default_factory=list)
    context: list[ContextEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(
            len(x)
            for x in (
                self.users,
                self.memories,
                self.history,
                self.messages,
                self.sessions,
                self.summaries,
                self.metrics,
                self.context,
            )
        )


@dataclass
class RestoreCounts:
    """What a restore did, by kind then outcome (`imported`, `exists`, `key_taken`,
    `no_memory`), and the memories it added (to embed)."""

    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    new_memories: list[tuple[str, str]] = field(default_factory=list)  # (user_id, memory_id)

    def add(self, kind: str, outcome: str, n: int = 1) -> None:
        got = self.by_kind.setdefault(kind, {})
        got[outcome] = got.get(outcome, 0) + n

    def merge(self, other: RestoreCounts) -> None:
        for kind, outcomes in other.by_kind.items():
            for outcome, n in outcomes.items():
                self.add(kind, outcome, n)


@dataclass
class Candidate:
    """A search candidate before the winners are read in full: what scoring needs."""

    pk: int
    importance: float
    access_count: int
    updated_at: str
    lexical: float = 0.0  # BM25, higher is better
    vector: float | None = None  # cosine
    in_session: bool = False  # said in a conversation: its neighbours can share its score
    size: int = 0  # characters of content
    role: str | None = None  # metadata `role`: who said it, in a conversation
    speaker: str | None = None  # metadata `speaker`: who said it, by name
    # The whole row, when the search read it already (`vector_search(whole=True)`): its
    # backend's own form, handed back to `hits` so a winner is not read twice.
    row: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ChangeFeed:
    """Memories changed and users erased past a point (`history_id`, `audit_id`); a cache
    drops what they name. `truncated`: more changes wait past this page. `reset`: the
    backend cannot tell what changed (its notice channel was interrupted)."""

    history_id: int
    audit_id: int
    memory_pk: int
    memories: list[tuple[str, str]]  # (user_id, memory_id)
    users: list[str]
    truncated: bool = False
    reset: bool = False  # changes may have been missed: drop everything


@dataclass(frozen=True)
class PurgeCounts:
    expired: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.deleted


class Backend(Protocol):
    """A storage backend. Methods raise only memvault errors."""

    capabilities: Capabilities

    # users
    async def ensure_user(self, user_id: str, username: str | None, now: datetime) -> User: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def update_user(self, user_id: str, change: Callable[[User], User]) -> User: ...
    async def list_users(self, limit: int, after: str | None) -> list[User]: ...
    async def erase_user(self, user_id: str, now: datetime, actor: str | None) -> dict[str, int]:
        """Hard-delete the user and all it owns (its API keys too), with an audit row."""
        ...

    # memories
    async def insert_memories(
        self,
        memories: Sequence[Memory],
        change: Change,
        now: datetime,
        vectors: Sequence[bytes | None] | None = None,
        merges: Sequence[Merge] = (),
        job: JobDone | None = None,
    ) -> list[Memory]:
        """Insert `memories`, apply `merges` and mark `job` done, all in one transaction
        (a lost lease raises `ConflictError` and nothing is written); returns the inserted
        memories, then the merged ones."""
        ...

    async def fetch(
        self, user_id: str, memory_ids: Sequence[str], now: datetime
    ) -> list[Memory]: ...
    async def fetch_any(self, user_id: str, memory_id: str) -> Memory | None:
        """The row whatever its state (deleted, expired); no access is counted."""
        ...

    async def mutate(
        self, user_id: str, memory_id: str, fn: MemoryChange, change: Change, now: datetime
    ) -> Memory: ...
    async def upsert(
        self, new: Memory, fn: MemoryChange, change: Change, now: datetime
    ) -> tuple[Memory, bool]: ...
    async def query(
        self,
        user_id: str,
        filters: Filters,
        order: str,
        cursor: str | None,
        limit: int,
        now: datetime,
    ) -> tuple[list[Memory], str | None]: ...
    async def find_by_hash(
        self, user_id: str, namespace: str, content_hash: str, now: datetime
    ) -> Memory | None: ...
    async def find_by_hashes(
        self, user_id: str, wanted: Sequence[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], Memory]:
        """`find_by_hash` for many (namespace, content hash) pairs in one read."""
        ...

    async def lexical(
        self, user_id: str, terms: Sequence[str], filters: Filters, k: int, now: datetime
    ) -> list[Candidate]: ...
    async def hits(
        self,
        user_id: str,
        pks: Sequence[int],
        now: datetime,
        *,
        count_access: bool = True,
        read: Mapping[int, tuple[Any, ...]] | None = None,
    ) -> dict[int, Memory]:
        """The visible rows among `pks` (search winners), each counted as one access.
        `read`: rows of some of them that this search read whole already (`Candidate.row`,
        by pk); they are taken as they are instead of being read again."""
        ...

    # vectors (capabilities.vector)
    async def vector_model(self) -> tuple[str, int] | None: ...
    async def set_vector_model(self, model: str, dimension: int, now: datetime) -> bool: ...
    async def put_vectors(self, user_id: str, items: Sequence[tuple[str, bytes]]) -> int: ...
    async def missing_vectors(
        self, after_pk: int, limit: int, user_id: str | None
    ) -> list[tuple[int, str, str, str]]: ...
    async def count_missing_vectors(self, user_id: str | None) -> int: ...
    async def vector_search(
        self,
        user_id: str,
        query: Any,
        filters: Filters,
        k: int,
        now: datetime,
        *,
        whole: bool = False,
        busy: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """The k visible memories most similar to `query`. With `whole`, a backend may read
        each one's whole row in the same query (`Candidate.row`): for a search whose winners
        come from here alone. `busy()` is true while the caller's keyword ranking runs at
        the same time: a backend that multiplies in process then leaves it a core."""
        ...

    async def nearest(
        self,
        user_id: str,
        queries: Sequence[Any],
        filters: Filters,
        now: datetime,
        min_similarity: float = -1.0,
    ) -> list[Candidate | None]:
        """For each query (a unit vector), the most similar visible memory when its cosine
        is at least `min_similarity`, else None (dedup on write asks for a whole batch)."""
        ...

    def pending_accesses(self, pks: Iterable[int]) -> dict[int, int]:
        """Accesses of rows `pks` this process counted and has not written yet (rows
        without any are left out): a search adds them to its candidates' stored counts, as
        a read of a memory does."""
        ...

    def kept_vectors(self, user_id: str) -> int:
        """How many vectors of `user_id` this process keeps in memory now (0: none, or
        the backend keeps none): a search of a big user runs its vector part beside the
        keyword part."""
        ...

    async def rebuild_lexical(self) -> int: ...
    async def neighbours(
        self, user_id: str, pks: Sequence[int], filters: Filters, now: datetime
    ) -> dict[int, list[Candidate]]:
        """For each of `pks` said in a conversation, the visible memories just before and
        after it in the same session."""
        ...

    async def history(self, user_id: str, memory_id: str) -> list[HistoryEntry]: ...
    async def purge(self, now: datetime, deleted_before: datetime) -> PurgeCounts: ...
    async def count_memories(self, user_id: str | None, now: datetime) -> int: ...
    async def store_stats(self, user_id: str | None, since: datetime, now: datetime) -> StoreStats:
        """Counts for a dashboard: the whole store's, or one user's."""
        ...

    # conversation, sessions, summary, metrics, global context
    async def add_message(
        self,
        message: Message,
        cap: int,
        metrics: Callable[[Metrics], Metrics],
        jobs: Sequence[Job] = (),
    ) -> Message: ...
    async def messages(self, user_id: str, limit: int, session_id: str | None) -> list[Message]: ...
    async def clear_messages(self, user_id: str) -> int: ...
    async def insert_session(self, session: Session) -> Session: ...
    async def get_session(self, user_id: str, session_id: str) -> Session | None: ...
    async def update_session(
        self, user_id: str, session_id: str, change: Callable[[Session], Session]
    ) -> Session: ...
    async def list_sessions(
        self, user_id: str, limit: int, status: str | None
    ) -> list[Session]: ...
    async def put_summary(self, user_id: str, content: str, now: datetime) -> Summary: ...
    async def get_summary(self, user_id: str) -> Summary | None: ...
    async def update_metrics(
        self, user_id: str, change: Callable[[Metrics], Metrics]
    ) -> Metrics: ...
    async def get_metrics(self, user_id: str) -> Metrics | None: ...
    async def put_context(
        self, key: str, value: Any, now: datetime, by: str | None
    ) -> ContextEntry: ...
    async def get_context(self, key: str) -> ContextEntry | None: ...
    async def list_context(self) -> list[ContextEntry]: ...
    async def delete_context(self, key: str) -> bool: ...

    # API keys and audit
    async def insert_key(self, key: ApiKey, key_hash: str, actor: str | None) -> ApiKey: ...
    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...
    async def list_keys(self, user_id: str | None, *, include_revoked: bool) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str, now: datetime, actor: str | None) -> ApiKey | None: ...
    async def add_audit(
        self,
        at: datetime,
        actor: str | None,
        action: str,
        user_id: str | None,
        details: dict[str, Any],
    ) -> None: ...
    async def audit_log(
        self, user_id: str | None, after: int | None, limit: int
    ) -> list[AuditEntry]: ...

    # restore (storage/restore.py)
    async def restore(self, batch: Restore, now: datetime, dry_run: bool) -> RestoreCounts:
        """Insert the records of `batch` the store lacks, as they were, in one transaction
        (rolled back when `dry_run`); existing ids are skipped, never overwritten."""
        ...

    # jobs (storage/jobs.py)
    async def enqueue_jobs(self, jobs: Sequence[Job]) -> list[Job]: ...
    async def claim_jobs(
        self,
        now: datetime,
        lease_s: float,
        limit: int,
        max_attempts: int,
        kinds: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> list[Job]: ...
    async def complete_job(self, done: JobDone, now: datetime) -> bool: ...
    async def fail_job(
        self, job_id: str, token: str, error: str, now: datetime, retry_at: datetime | None
    ) -> bool: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def list_jobs(
        self, user_id: str | None, status: str | None, limit: int, before: str | None = None
    ) -> list[Job]: ...
    async def retry_jobs(
        self, job_ids: Sequence[str] | None, user_id: str | None, now: datetime
    ) -> int: ...
    async def job_counts(self, user_id: str | None = None) -> dict[str, int]: ...

    # change feed (for coherent caches)
    async def data_changed(self) -> bool: ...
    async def changes_since(self, history_id: int, audit_id: int, memory_pk: int) -> ChangeFeed: ...
    async def change_position(self) -> ChangeFeed: ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one caller at a time across every process on this store (maintenance
        such as `reindex`); a second caller gets `ConflictError` at once."""
        ...

    async def flush(self) -> None: ...
    async def close(self) -> None: ...
