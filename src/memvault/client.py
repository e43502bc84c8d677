"""The Python library door: `AsyncMemVault` (async) and `MemVault` (blocking).

`MemVault` shares every line of logic with `AsyncMemVault`: it opens the same service on the
inline runner, where storage work runs on the caller's thread and the service's coroutines
never suspend, and drives each coroutine to completion (`storage.runner.drive`). No event
loop and no thread hop sit on its path; it is safe to use from several threads at once.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from memvault.clock import Clock, SystemClock
from memvault.config import Settings, load_settings
from memvault.embed import Embedder, QueryCache, shared_embedder
from memvault.models import (
    ApiKey,
    AuditEntry,
    ChatContext,
    ContextEntry,
    Filters,
    HistoryEntry,
    Job,
    JobReport,
    Memory,
    MemoryPatch,
    Message,
    Metrics,
    NewMemory,
    Page,
    SearchHit,
    Session,
    Summary,
    User,
    VectorLike,
)
from memvault.service.access import AccessOps
from memvault.service.admin import drive, open_backend
from memvault.service.archive import ImportReport, Line
from memvault.service.context import ContextOps
from memvault.service.export import ExportOps
from memvault.service.extraction import ExtractOps
from memvault.service.search import Mode, Offload, ReindexReport
from memvault.service.seeds import SeedImportOps, SeedReport
from memvault.service.worker import AsyncWorker, ThreadWorker
from memvault.storage.base import Backend, PurgeCounts, StoreStats

T = TypeVar("T")
QUERY_THREADS = 32


class _ThreadOffload(Offload):
    """Embedding off the event loop, on worker threads.

    Query embeddings (`start`) get threads of their own, enough for every search in flight
    to wait at once: concurrent queries are embedded together in one batch (`QueryCache`),
    and asyncio's default pool (six threads on 2 cores) capped those batches at six."""

    _queries: ThreadPoolExecutor | None = None
    _lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def start(self, fn: Callable[..., T], *args: Any) -> Any:
        with _ThreadOffload._lock:
            if _ThreadOffload._queries is None:
                _ThreadOffload._queries = ThreadPoolExecutor(
                    QUERY_THREADS, thread_name_prefix="memvault-query"
                )
            pool = _ThreadOffload._queries
        return asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    async def finish(self, started: Any) -> Any:
        return await started

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Any:
        return asyncio.ensure_future(fn(*args))

    async def join(self, started: Any) -> Any:
        return await started


class AsyncMemVault(ContextOps, ExtractOps, SeedImportOps, AccessOps, ExportOps):
    """The memvault service for asyncio code. Open with `await AsyncMemVault.open()`."""

    _worker: AsyncWorker | ThreadWorker | None = None

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        clock: Clock,
        *,
        embedder: Embedder | None = None,
        offload: Offload | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.embedder = embedder
        self.offload = offload or Offload()
        self.query_cache = QueryCache(embedder) if embedder is not None else None

    @classmethod
    async def open(
        cls, settings: Settings | None = None, *, clock: Clock | None = None
    ) -> AsyncMemVault:
        """Open the store named by `settings.database_url` (migrating it when needed)."""
        s = settings or load_settings()
        backend = await asyncio.to_thread(open_backend, s.database_url, s, threaded=True)
        return cls(
            backend,
            s,
            clock or SystemClock(),
            embedder=shared_embedder(s),
            offload=_ThreadOffload(),
        )

    @classmethod
    def open_inline(
        cls, settings: Settings | None = None, *, clock: Clock | None = None
    ) -> AsyncMemVault:
        """The service with storage on the calling thread: its coroutines never suspend, so
        threads drive them with `memvault.service.admin.drive` (what `MemVault` does, and
        the orchestrator's worker threads)."""
        s = settings or load_settings()
        backend = open_backend(s.database_url, s, threaded=False)
        return cls(
            backend, s, clock or SystemClock(), embedder=shared_embedder(s), offload=Offload()
        )

    async def flush(self) -> None:
        """Write pending access counts now."""
        await self.backend.flush()

    def start_worker(self) -> None:
        """Run due jobs (extraction, summaries) in the background until `close`: a task on
        the running event loop, or a thread for the inline service (`MemVault`). Jobs this
        service queues start the worker by themselves (setting `job_worker`)."""
        if self._worker is not None:
            return
        poll = self.settings.job_poll_s
        if type(self.offload) is Offload:  # inline: coroutines never suspend
            self._worker = ThreadWorker(lambda: drive(self.run_jobs()), poll, "memvault-jobs")
        else:
            self._worker = AsyncWorker(self.run_jobs, poll)
        self._worker.start()

    def _jobs_queued(self) -> None:
        if self._worker is not None:
            self._worker.wake()
        elif self.settings.job_worker:
            self.start_worker()

    async def stop_worker(self) -> None:
        """Stop the background worker after the job in hand."""
        worker, self._worker = self._worker, None
        if isinstance(worker, AsyncWorker):
            await worker.stop()
        elif worker is not None:
            worker.stop()

    async def close(self) -> None:
        await self.stop_worker()
        await self.backend.close()

    async def __aenter__(self) -> AsyncMemVault:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _next(records: AsyncIterator[T]) -> T:
    return await anext(records)


class MemVault:
    """The memvault service as a blocking library: `MemVault()` opens the default store."""

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None) -> None:
        self._inner = AsyncMemVault.open_inline(settings, clock=clock)
        self.settings = self._inner.settings

    def __enter__(self) -> MemVault:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        drive(self._inner.close())

    def flush(self) -> None:
        """Write pending access counts now."""
        drive(self._inner.flush())

    def add(
        self,
        user_id: str,
        content: str | dict[str, Any],
        *,
        namespace: str | None = None,
        key: str | None = None,
        memory_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        category: str | None = None,
        importance: float | None = None,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        embedding: VectorLike | None = None,
        actor: str | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
    ) -> Memory:
        """Store one memory for `user_id` (created on first use) and return it."""
        return drive(
            self._inner.add(
                user_id,
                content,
                namespace=namespace,
                key=key,
                memory_type=memory_type,
                metadata=metadata,
                tags=tags,
                category=category,
                importance=importance,
                ttl_seconds=ttl_seconds,
                expires_at=expires_at,
                session_id=session_id,
                agent_id=agent_id,
                embedding=embedding,
                actor=actor,
                valid_from=valid_from,
                valid_to=valid_to,
            )
        )

    def add_many(
        self,
        user_id: str,
        memories: Sequence[NewMemory | Mapping[str, Any]],
        *,
        actor: str | None = None,
    ) -> list[Memory]:
        """Store up to `limits.MAX_BATCH` memories in one transaction: all or none."""
        return drive(self._inner.add_many(user_id, memories, actor=actor))

    def add_message(
        self,
        user_id: str,
        role: str,
        content: str,
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        extract: bool | None = None,
    ) -> Message:
        """Append to the conversation history, keeping the newest `max_messages` (seed 002's
        `MAX_MESSAGES`); counts towards the user's metrics and, for `user` messages, the daily
        streak. `extract` queues it for memory extraction (see `AsyncMemVault.add_message`).
        """
        return drive(
            self._inner.add_message(
                user_id, role, content, session_id=session_id, metadata=metadata, extract=extract
            )
        )

    def import_archive(
        self,
        lines: Iterable[Line],
        *,
        dry_run: bool = False,
        user_id: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Restore an archive's records (see `memvault.service.archive`)."""
        return drive(
            self._inner.import_archive(lines, dry_run=dry_run, user_id=user_id, progress=progress)
        )

    def import_seed_sql(self, url: str, *, dry_run: bool = False) -> SeedReport:
        """Import seed 001's and seed 003's tables from the database at `url`."""
        return drive(self._inner.import_seed_sql(url, dry_run=dry_run))

    def import_seed_elysia(self, data_dir: str | Path, *, dry_run: bool = False) -> SeedReport:
        """Import seed 002's JSON data directory."""
        return drive(self._inner.import_seed_elysia(data_dir, dry_run=dry_run))

    def export_all(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Everything in the store as `(kind, record)`, header first."""
        records = self._inner.export_all()
        while True:
            try:
                yield drive(_next(records))
            except StopAsyncIteration:
                return

    def remember(
        self,
        user_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        session_id: str | None = None,
        wait: bool = False,
    ) -> list[Message]:
        """Add messages to the history and queue them for memory extraction; `wait=True`
        runs this user's due jobs before returning."""
        return drive(self._inner.remember(user_id, messages, session_id=session_id, wait=wait))

    def run_jobs(
        self,
        *,
        limit: int | None = None,
        user_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> JobReport:
        """Lease the due jobs (extraction, summaries) and run them now."""
        return drive(self._inner.run_jobs(limit=limit, user_id=user_id, kinds=kinds))

    def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[Job]:
        """Jobs, newest first."""
        return drive(
            self._inner.list_jobs(user_id=user_id, status=status, limit=limit, before=before)
        )

    def get_job(self, job_id: str, *, user_id: str | None = None) -> Job:
        return drive(self._inner.get_job(job_id, user_id=user_id))

    def retry_jobs(
        self, job_ids: Sequence[str] | None = None, *, user_id: str | None = None
    ) -> int:
        """Queue failed jobs again; returns how many."""
        return drive(self._inner.retry_jobs(job_ids, user_id=user_id))

    def job_counts(self, user_id: str | None = None) -> dict[str, int]:
        return drive(self._inner.job_counts(user_id))

    def generate_summary(self, user_id: str, *, mode: str | None = None) -> Summary:
        """Build and store the user's summary from their facts and recent messages."""
        return drive(self._inner.generate_summary(user_id, mode=mode))

    def start_worker(self) -> None:
        """Run due jobs on a background thread until `close`."""
        self._inner.start_worker()

    def stop_worker(self) -> None:
        drive(self._inner.stop_worker())

    def add_permanent_memory(
        self, user_id: str, content: str | dict[str, Any], **fields: Any
    ) -> Memory:
        """A memory that never expires (seed 002's permanent memories)."""
        return drive(self._inner.add_permanent_memory(user_id, content, **fields))

    def add_user_fact(
        self,
        user_id: str,
        fact: str,
        category: str | None = None,
        *,
        importance: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Memory:
        """Store a fact about the user under a category (seed 002). The same fact again
        (ignoring case and spacing) updates the stored one instead of adding a copy.
        """
        return drive(
            self._inner.add_user_fact(
                user_id, fact, category, importance=importance, metadata=metadata, actor=actor
            )
        )

    def clear_message_history(self, user_id: str) -> int:
        """Delete a user's conversation history; returns how many messages went."""
        return drive(self._inner.clear_message_history(user_id))

    def stats(self, user_id: str | None = None, *, days: int = 30) -> StoreStats:
        """Counts of the store (or one user's part) and memories created per day."""
        return drive(self._inner.stats(user_id, days=days))

    def count(self, user_id: str | None = None) -> int:
        """Live memories of one user, or of everyone."""
        return drive(self._inner.count(user_id))

    def create_session(
        self,
        user_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> Session:
        return drive(self._inner.create_session(user_id, metadata=metadata, agent_id=agent_id))

    def delete(
        self,
        user_id: str,
        memory_id: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
    ) -> Memory:
        """Soft-delete: hidden everywhere, restorable until purged after the retention period."""
        return drive(
            self._inner.delete(user_id, memory_id, expected_version=expected_version, actor=actor)
        )

    def delete_global_context(self, key: str) -> None:
        return drive(self._inner.delete_global_context(key))

    def end_session(self, user_id: str, session_id: str) -> Session:
        return drive(self._inner.end_session(user_id, session_id))

    def erase_user(self, user_id: str, *, actor: str | None = None) -> dict[str, int]:
        """Hard-delete everything a user owns (memories, history, messages, sessions, summary,
        metrics, API keys), leaving an audit row. Returns how many rows of each kind went.
        """
        return drive(self._inner.erase_user(user_id, actor=actor))

    def export_user(self, user_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield `(kind, record)` for everything `user_id` owns (see `AsyncMemVault`)."""
        records = self._inner.export_user(user_id)
        while True:
            try:
                yield drive(_next(records))
            except StopAsyncIteration:
                return

    def create_api_key(
        self,
        user_id: str | None = None,
        *,
        admin: bool = False,
        name: str | None = None,
        rate_per_minute: int | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a user or admin key; returns it and its secret (shown this once)."""
        return drive(
            self._inner.create_api_key(
                user_id, admin=admin, name=name, rate_per_minute=rate_per_minute, actor=actor
            )
        )

    def list_api_keys(
        self, user_id: str | None = None, *, include_revoked: bool = False
    ) -> list[ApiKey]:
        return drive(self._inner.list_api_keys(user_id, include_revoked=include_revoked))

    def revoke_api_key(self, key_id: str, *, actor: str | None = None) -> ApiKey:
        return drive(self._inner.revoke_api_key(key_id, actor=actor))

    def authenticate(self, secret: str) -> ApiKey:
        """The live key whose secret this is; raises `UnauthenticatedError` otherwise."""
        return drive(self._inner.authenticate(secret))

    def known_key(self, secret: str) -> ApiKey | None:
        """The live key of `secret` when checked lately, without asking storage; or None."""
        return self._inner.known_key(secret)

    def audit_log(
        self, user_id: str | None = None, *, after: int | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        return drive(self._inner.audit_log(user_id, after=after, limit=limit))

    def record_audit(
        self,
        action: str,
        *,
        user_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        return drive(
            self._inner.record_audit(action, user_id=user_id, actor=actor, details=details, at=at)
        )

    def context(
        self,
        user_id: str,
        message: str,
        *,
        system_prompt: str | None = None,
        token_budget: int | None = None,
        k: int = 8,
        history_limit: int = 20,
        session_id: str | None = None,
    ) -> ChatContext:
        """The OpenAI-style messages for answering `message`, with the user's memory in a
        "User Memory: ..." system message (template in docs/rest.md)."""
        return drive(
            self._inner.context(
                user_id,
                message,
                system_prompt=system_prompt,
                token_budget=token_budget,
                k=k,
                history_limit=history_limit,
                session_id=session_id,
            )
        )

    def get(self, user_id: str, memory_id: str) -> Memory:
        """The live memory `memory_id` of `user_id`; counts as one access."""
        return drive(self._inner.get(user_id, memory_id))

    def get_global_context(self) -> dict[str, Any]:
        """Every global value by key."""
        return drive(self._inner.get_global_context())

    def inspect(self, user_id: str, memory_id: str) -> Memory:
        """The memory as stored, whatever its state, without counting an access."""
        return drive(self._inner.inspect(user_id, memory_id))

    def get_many(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        """The live memories among `memory_ids`, in the order asked; missing ones are left out."""
        return drive(self._inner.get_many(user_id, memory_ids))

    def get_message_history(
        self, user_id: str, *, limit: int | None = None, session_id: str | None = None
    ) -> list[Message]:
        """The newest `limit` messages (all kept ones by default), oldest first."""
        return drive(self._inner.get_message_history(user_id, limit=limit, session_id=session_id))

    def get_metrics(self, user_id: str) -> Metrics:
        """The user's metrics (zeros for a user with no activity yet)."""
        return drive(self._inner.get_metrics(user_id))

    def get_or_create_user(self, user_id: str, username: str | None = None) -> User:
        """The user `user_id`, created (with `username`) when new (seed 002's call)."""
        return drive(self._inner.get_or_create_user(user_id, username))

    def get_permanent_memories(self, user_id: str) -> list[Memory]:
        return drive(self._inner.get_permanent_memories(user_id))

    def get_session(self, user_id: str, session_id: str) -> Session:
        return drive(self._inner.get_session(user_id, session_id))

    def get_summary(self, user_id: str | int) -> Summary | None:
        return drive(self._inner.get_summary(user_id))

    def get_user(self, user_id: str) -> User:
        """Raises `NotFoundError` for an unknown user."""
        return drive(self._inner.get_user(user_id))

    def get_user_facts(self, user_id: str, category: str | None = None) -> list[Memory]:
        """The user's live facts, oldest first, optionally of one category."""
        return drive(self._inner.get_user_facts(user_id, category))

    def history(self, user_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every change of a memory, oldest first (deleted memories keep theirs until purged)."""
        return drive(self._inner.history(user_id, memory_id))

    def increment_metric(self, user_id: str, name: str, by: int = 1) -> Metrics:
        """Add `by` to the user's counter `name`."""
        return drive(self._inner.increment_metric(user_id, name, by))

    def list_memories(
        self,
        user_id: str,
        *,
        filters: Filters | Mapping[str, Any] | None = None,
        order: str = "created_desc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """One page of a user's live memories, newest first by default."""
        return drive(
            self._inner.list_memories(
                user_id, filters=filters, order=order, limit=limit, cursor=cursor
            )
        )

    def list_sessions(
        self, user_id: str, *, status: str | None = None, limit: int | None = None
    ) -> list[Session]:
        return drive(self._inner.list_sessions(user_id, status=status, limit=limit))

    def list_users(self, *, limit: int | None = None, after: str | None = None) -> list[User]:
        """Users in id order; pass the last id as `after` for the next page."""
        return drive(self._inner.list_users(limit=limit, after=after))

    def purge(self) -> PurgeCounts:
        """Hard-delete expired memories and those soft-deleted longer than the retention period
        (`soft_delete_retention_days`), with their history.
        """
        return drive(self._inner.purge())

    def restore(self, user_id: str, memory_id: str, *, actor: str | None = None) -> Memory:
        """Bring back a soft-deleted memory."""
        return drive(self._inner.restore(user_id, memory_id, actor=actor))

    def revert(
        self, user_id: str, memory_id: str, version: int, *, actor: str | None = None
    ) -> Memory:
        """Make a live memory look as it did at `version` again (a new version; history stays)."""
        return drive(self._inner.revert(user_id, memory_id, version, actor=actor))

    def save_summary(self, user_id: str | int, content: str) -> Summary:
        """Upsert the user's one summary: `created_at` stays, `updated_at` moves."""
        return drive(self._inner.save_summary(user_id, content))

    def search(
        self,
        user_id: str,
        query: str,
        *,
        k: int = 10,
        filters: Filters | Mapping[str, Any] | None = None,
        memory_types: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        mode: Mode = "hybrid",
        explain: bool = False,
        query_vector: VectorLike | None = None,
    ) -> list[SearchHit]:
        """The k live memories of `user_id` that best answer `query`, best first."""
        return drive(
            self._inner.search(
                user_id,
                query,
                k=k,
                filters=filters,
                memory_types=memory_types,
                tags=tags,
                mode=mode,
                explain=explain,
                query_vector=query_vector,
            )
        )

    def reindex(
        self,
        *,
        missing: bool = False,
        lexical: bool = False,
        user_id: str | None = None,
        batch: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReindexReport:
        """Embed memories again with the configured embedder (see `AsyncMemVault.reindex`)."""
        return drive(
            self._inner.reindex(
                missing=missing, lexical=lexical, user_id=user_id, batch=batch, progress=progress
            )
        )

    def set_global_context(self, key: str, value: Any, *, actor: str | None = None) -> ContextEntry:
        """Set a value every user's context can see."""
        return drive(self._inner.set_global_context(key, value, actor=actor))

    def update(
        self,
        user_id: str,
        memory_id: str,
        patch: MemoryPatch | Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        **fields: Any,
    ) -> Memory:
        """Change the fields given (in `patch` or as keywords); the version goes up by one."""
        return drive(
            self._inner.update(
                user_id, memory_id, patch, expected_version=expected_version, actor=actor, **fields
            )
        )

    def update_session(
        self, user_id: str, session_id: str, *, metadata: Mapping[str, Any]
    ) -> Session:
        """Merge `metadata` into an active session's metadata."""
        return drive(self._inner.update_session(user_id, session_id, metadata=metadata))

    def update_streak(self, user_id: str, *, today: date | None = None) -> Metrics:
        """Record activity today (in the user's time zone) and return the streak."""
        return drive(self._inner.update_streak(user_id, today=today))

    def update_user(
        self,
        user_id: str,
        *,
        username: str | None = None,
        profile: Mapping[str, Any] | None = None,
        timezone: str | None = None,
        replace_profile: bool = False,
    ) -> User:
        """Set the user's name, time zone (IANA name, for streaks) or profile fields
        (merged into the stored profile unless `replace_profile`).
        """
        return drive(
            self._inner.update_user(
                user_id,
                username=username,
                profile=profile,
                timezone=timezone,
                replace_profile=replace_profile,
            )
        )

    def upsert(
        self,
        user_id: str,
        namespace: str,
        key: str,
        content: str | dict[str, Any],
        *,
        actor: str | None = None,
        **fields: Any,
    ) -> Memory:
        """Create the memory at (user, namespace, key), or update the live one there."""
        return drive(self._inner.upsert(user_id, namespace, key, content, actor=actor, **fields))
