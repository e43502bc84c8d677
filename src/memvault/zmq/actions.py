"""The orchestrator's actions: payload in, `data` out, every rule in the service.

Each handler gets the vault, the caller and the payload, and returns JSON-ready data.
Reads of memories go through the coherent read cache (`memvault.service.cache`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from memvault import __version__
from memvault.client import AsyncMemVault
from memvault.errors import InvalidArgumentError
from memvault.models import Memory, SearchHit
from memvault.service.access import Principal
from memvault.service.cache import ReadCache

# Payload keys that address a request rather than describe a memory.
_ADDRESSING = ("user_id", "memory_id", "expected_version")
WRITES = frozenset(
    {
        "create_session",
        "update_session",
        "end_session",
        "create_memory",
        "update_memory",
        "delete_memory",
        "add_message",
        "remember",
        "generate_summary",
    }
)


@dataclass
class Context:
    vault: AsyncMemVault
    cache: ReadCache
    default_user: str
    search_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(8)
    )
    started: float = field(default_factory=time.monotonic)


Handler = Callable[[Context, Principal, dict[str, Any]], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


Loaded = tuple[Any, frozenset[str], int]  # data, the memory ids it holds, its size in bytes


@dataclass(slots=True)
class CachedRead:
    """A read the cache answers: its key, whose it is, and how to load it on a miss."""

    key: Hashable
    user_id: str
    load: Callable[[], Awaitable[Loaded]]


Planner = Callable[[Context, Principal, dict[str, Any]], CachedRead]
# The reads the cache answers, by action: the server may answer their hits at once, on the
# thread that receives requests (`Orchestrator._answer_hit`).
CACHED_READS: dict[str, Planner] = {}


def cached_read(name: str) -> Callable[[Planner], Planner]:
    def register(plan: Planner) -> Planner:
        async def handler(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
            read = plan(ctx, who, p)
            return await ctx.cache.get_or_load(read.key, read.user_id, read.load)

        CACHED_READS[name] = plan
        HANDLERS[name] = handler
        return plan

    return register


def _user(ctx: Context, who: Principal, p: dict[str, Any]) -> str:
    return who.user(_opt_str(p, "user_id"), default=ctx.default_user)


def _str(p: dict[str, Any], name: str) -> str:
    value = p.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"payload.{name} must be a non-empty string", {"field": name})
    return value


def _opt_str(p: dict[str, Any], name: str) -> str | None:
    value = p.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"payload.{name} must be a string", {"field": name})
    return value


def _opt_int(p: dict[str, Any], name: str) -> int | None:
    value = p.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidArgumentError(f"payload.{name} must be an integer", {"field": name})
    return value


def _dict(p: dict[str, Any], *names: str) -> dict[str, Any] | None:
    for name in names:
        value = p.get(name)
        if value is not None:
            if not isinstance(value, dict):
                raise InvalidArgumentError(f"payload.{name} must be an object", {"field": name})
            return value
    return None


def _memory(m: Memory) -> dict[str, Any]:
    return m.model_dump(mode="json")


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str))


# ---------------------------------------------------------------------------- sessions
@action("create_session")
async def create_session(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    s = await ctx.vault.create_session(
        _user(ctx, who, p),
        metadata=_dict(p, "session_metadata", "metadata"),
        agent_id=_opt_str(p, "agent_id"),
    )
    return s.model_dump(mode="json")


@action("get_session")
async def get_session(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    s = await ctx.vault.get_session(_user(ctx, who, p), _str(p, "session_id"))
    return s.model_dump(mode="json")


@action("update_session")
async def update_session(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    meta = _dict(p, "session_metadata", "metadata")
    if meta is None:
        raise InvalidArgumentError("payload.metadata must be an object", {"field": "metadata"})
    s = await ctx.vault.update_session(_user(ctx, who, p), _str(p, "session_id"), metadata=meta)
    return s.model_dump(mode="json")


@action("end_session")
async def end_session(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    s = await ctx.vault.end_session(_user(ctx, who, p), _str(p, "session_id"))
    return s.model_dump(mode="json")


# ---------------------------------------------------------------------------- memories
@action("create_memory")
async def create_memory(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    uid = _user(ctx, who, p)
    fields = {k: v for k, v in p.items() if k not in _ADDRESSING and v is not None}
    # The service validates every field (unknown ones included), as for every other door.
    created = await ctx.vault.add_many(uid, [fields], actor=who.actor)
    return _memory(created[0])


@cached_read("get_memory")
def get_memory(ctx: Context, who: Principal, p: dict[str, Any]) -> CachedRead:
    uid, mid = _user(ctx, who, p), _str(p, "memory_id")

    async def load() -> Loaded:
        data = _memory(await ctx.vault.get(uid, mid))
        return data, frozenset({mid}), _size(data)

    return CachedRead(("get", uid, mid), uid, load)


@cached_read("batch_read")
def batch_read(ctx: Context, who: Principal, p: dict[str, Any]) -> CachedRead:
    uid = _user(ctx, who, p)
    ids = p.get("memory_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidArgumentError(
            "payload.memory_ids must be a list of strings", {"field": "memory_ids"}
        )

    async def load() -> Loaded:
        found = await ctx.vault.get_many(uid, ids)
        got = {m.memory_id for m in found}
        data = {
            "memories": [_memory(m) for m in found],
            "missing": [i for i in ids if i not in got],
        }
        return data, frozenset(ids), _size(data)

    return CachedRead(("batch", uid, tuple(ids)), uid, load)


@action("update_memory")
async def update_memory(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    uid, mid = _user(ctx, who, p), _str(p, "memory_id")
    patch = {k: v for k, v in p.items() if k not in _ADDRESSING}
    m = await ctx.vault.update(
        uid, mid, patch, expected_version=_opt_int(p, "expected_version"), actor=who.actor
    )
    return _memory(m)


@action("delete_memory")
async def delete_memory(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    uid, mid = _user(ctx, who, p), _str(p, "memory_id")
    m = await ctx.vault.delete(
        uid, mid, expected_version=_opt_int(p, "expected_version"), actor=who.actor
    )
    return {"memory_id": m.memory_id, "deleted": True, "version": m.version}


@action("list_memories")
async def list_memories(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    page = await ctx.vault.list_memories(
        _user(ctx, who, p),
        filters=_dict(p, "filters"),
        order=p.get("order", "created_desc"),
        limit=_opt_int(p, "limit"),
        cursor=_opt_str(p, "cursor"),
    )
    return {"memories": [_memory(m) for m in page.items], "next_cursor": page.next_cursor}


def _hit(h: SearchHit) -> dict[str, Any]:
    out = _memory(h.memory)
    out["score"] = h.score
    if h.explain is not None:
        out["explain"] = h.explain
    return out


@cached_read("search")
def search(ctx: Context, who: Principal, p: dict[str, Any]) -> CachedRead:
    uid = _user(ctx, who, p)
    query = p.get("query")
    k = p.get("k", p.get("limit", 10))
    args = {
        "k": k,
        "filters": _dict(p, "filters"),
        "memory_types": p.get("memory_types"),
        "tags": p.get("tags"),
        "mode": p.get("mode", "hybrid"),
        "explain": p.get("explain") is True,
    }

    async def load() -> Loaded:
        with ctx.search_slots:  # `search_concurrency`: more at once is slower on few cores
            hits = await ctx.vault.search(uid, query, **args)  # type: ignore[arg-type]
        data = {"results": [_hit(h) for h in hits], "count": len(hits)}
        return data, frozenset(h.memory.memory_id for h in hits), _size(data)

    key = ("search", uid, json.dumps([query, args], sort_keys=True, default=str))
    return CachedRead(key, uid, load)


# ---------------------------------------------------------------------------- conversation
@action("add_message")
async def add_message(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    msg = await ctx.vault.add_message(
        _user(ctx, who, p),
        p.get("role"),  # type: ignore[arg-type]
        p.get("content"),  # type: ignore[arg-type]
        session_id=_opt_str(p, "session_id"),
        metadata=_dict(p, "metadata"),
        extract=p.get("extract"),
    )
    return msg.model_dump(mode="json")


@action("remember")
async def remember(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    """Messages added and queued for memory extraction (`wait`: extracted first)."""
    uid = _user(ctx, who, p)
    wait = p.get("wait", False)
    if not isinstance(wait, bool):
        raise InvalidArgumentError("payload.wait must be true or false", {"field": "wait"})
    stored = await ctx.vault.remember(
        uid,
        p.get("messages"),  # type: ignore[arg-type]  # checked by the service
        session_id=_opt_str(p, "session_id"),
        wait=wait,
    )
    return {
        "messages": [m.model_dump(mode="json") for m in stored],
        "jobs": await ctx.vault.job_counts(uid),
    }


@action("generate_summary")
async def generate_summary(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    """Build and store the user's summary from their facts and recent messages."""
    summary = await ctx.vault.generate_summary(_user(ctx, who, p), mode=_opt_str(p, "mode"))
    return summary.model_dump(mode="json")


@action("get_summary")
async def get_summary(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    summary = await ctx.vault.get_summary(_user(ctx, who, p))
    return {"summary": None if summary is None else summary.model_dump(mode="json")}


@action("get_history")
async def get_history(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    msgs = await ctx.vault.get_message_history(
        _user(ctx, who, p), limit=_opt_int(p, "limit"), session_id=_opt_str(p, "session_id")
    )
    return {"messages": [m.model_dump(mode="json") for m in msgs]}


@action("get_context")
async def get_context(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    uid = _user(ctx, who, p)
    with ctx.search_slots:  # it searches: `search_concurrency` applies
        c = await ctx.vault.context(
            uid,
            p.get("message"),  # type: ignore[arg-type]
            system_prompt=_opt_str(p, "system_prompt"),
            token_budget=_opt_int(p, "token_budget"),
            k=p.get("k", 8),
            history_limit=p.get("history_limit", 20),
            session_id=_opt_str(p, "session_id"),
        )
    return c.model_dump(mode="json")


# ---------------------------------------------------------------------------- service
@action("health")
async def health(ctx: Context, who: Principal, p: dict[str, Any]) -> Any:
    await ctx.vault.list_users(limit=1)
    return {"status": "ok", "version": __version__}


def stats_of(ctx: Context, counters: dict[str, Any]) -> dict[str, Any]:
    return {
        "uptime_s": round(time.monotonic() - ctx.started, 3),
        "cache": {
            **ctx.cache.stats.as_dict(),
            "entries": len(ctx.cache),
            "bytes": ctx.cache.size_bytes,
            "max_entries": ctx.cache.max_entries,
            "max_bytes": ctx.cache.max_bytes,
            "ttl_s": ctx.cache.ttl_s,
        },
        **counters,
    }
