"""`MemoryClient`: seed 004's client library for the Memory Orchestrator, and its asyncio
twin `AsyncMemoryClient`. Both build requests with `memvault.zmq.protocol` and only send
and receive here.

Every call returns the reply envelope as seed 004's client did:
`{"status": "success", "data": {...}, "request_id": ...}` or `{"status": "error",
"error": {"code", "message", "details"}, ...}` (or raises the matching `MemvaultError` with
`raise_errors=True`). The client remembers the session `create_session` opened and attaches
it to new memories and messages. A call that gets no reply within `timeout_ms` rebuilds
the REQ socket; reads are retried up to `retries` times, writes only when they carry an
`idempotency_key` (the server answers a repeated key with the first reply).
"""

from __future__ import annotations

import abc
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from memvault.errors import UnavailableError
from memvault.zmq import protocol

log = logging.getLogger("memvault.zmq.client")

DEFAULT_ADDRESS = "tcp://127.0.0.1:5570"
READS = frozenset(
    {
        "get_session",
        "get_memory",
        "batch_read",
        "search",
        "list_memories",
        "get_history",
        "get_context",
        "get_summary",
        "health",
        "stats",
    }
)
_MAX_REPLY = 256 * 1024 * 1024
_RCVMORE = int(zmq.RCVMORE)

Reply = dict[str, Any]


class _Calls(abc.ABC):
    """Every action as a method; `_call` (sync or async) sends it."""

    session_id: str | None
    user_id: str | None

    @abc.abstractmethod
    def _call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        after: Callable[[Reply], None] | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        """Send one request; the blocking client returns the reply, the async one a
        coroutine of it."""

    def call(
        self,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout_ms: int | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Any action by name, with this call's own timeout (default: the client's)."""
        return self._call(
            action, dict(payload or {}), idempotency_key=idempotency_key, timeout_ms=timeout_ms
        )

    def _p(self, **fields: Any) -> dict[str, Any]:
        out = {k: v for k, v in fields.items() if v is not None}
        if self.user_id is not None:
            out.setdefault("user_id", self.user_id)
        return out

    # sessions
    def create_session(
        self,
        session_metadata: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Open a session and make it the current one."""

        def remember(reply: Reply) -> None:
            if reply.get("status") == "success":
                self.session_id = reply["data"]["session_id"]

        return self._call(
            "create_session",
            self._p(session_metadata=session_metadata, agent_id=agent_id),
            idempotency_key=idempotency_key,
            after=remember,
        )

    def get_session(self, session_id: str | None = None) -> Any:
        return self._call("get_session", self._p(session_id=session_id or self.session_id))

    def update_session(
        self, session_metadata: dict[str, Any], session_id: str | None = None
    ) -> Any:
        return self._call(
            "update_session",
            self._p(session_id=session_id or self.session_id, session_metadata=session_metadata),
        )

    def end_session(self, session_id: str | None = None) -> Any:
        """End a session (the current one by default); the current session is forgotten."""
        sid = session_id or self.session_id

        def forget(reply: Reply) -> None:
            if reply.get("status") == "success" and sid == self.session_id:
                self.session_id = None

        return self._call("end_session", self._p(session_id=sid), after=forget)

    # memories
    def create_memory(
        self,
        memory_type: str | None = None,
        content: Any = None,
        tags: list[str] | None = None,
        *,
        importance: float | None = None,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Any:
        """Store a memory (in the current session unless `session_id` says otherwise)."""
        payload = self._p(
            memory_type=memory_type,
            content=content,
            tags=tags,
            importance=importance,
            metadata=metadata,
            session_id=session_id or self.session_id,
            **fields,
        )
        return self._call("create_memory", payload, idempotency_key=idempotency_key)

    def get_memory(self, memory_id: str) -> Any:
        return self._call("get_memory", self._p(memory_id=memory_id))

    def update_memory(
        self,
        memory_id: str,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Any:
        payload = self._p(memory_id=memory_id, expected_version=expected_version)
        payload.update(fields)
        return self._call("update_memory", payload, idempotency_key=idempotency_key)

    def delete_memory(
        self,
        memory_id: str,
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        payload = self._p(memory_id=memory_id, expected_version=expected_version)
        return self._call("delete_memory", payload, idempotency_key=idempotency_key)

    def batch_read(self, memory_ids: list[str]) -> Any:
        return self._call("batch_read", self._p(memory_ids=list(memory_ids)))

    def search(
        self,
        query: str,
        memory_types: list[str] | None = None,
        tags: list[str] | None = None,
        *,
        k: int = 10,
        filters: dict[str, Any] | None = None,
        mode: str | None = None,
        explain: bool = False,
    ) -> Any:
        payload = self._p(
            query=query,
            memory_types=memory_types,
            tags=tags,
            k=k,
            filters=filters,
            mode=mode,
            explain=explain or None,
        )
        return self._call("search", payload)

    def list_memories(
        self,
        *,
        filters: dict[str, Any] | None = None,
        order: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Any:
        payload = self._p(filters=filters, order=order, limit=limit, cursor=cursor)
        return self._call("list_memories", payload)

    # conversation
    def add_message(
        self,
        role: str,
        content: str,
        *,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        extract: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        payload = self._p(
            role=role,
            content=content,
            session_id=session_id or self.session_id,
            metadata=metadata,
            extract=extract,
        )
        return self._call("add_message", payload, idempotency_key=idempotency_key)

    def remember(
        self,
        messages: list[dict[str, Any]],
        *,
        wait: bool = False,
        session_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Add messages and queue them for memory extraction (docs/extraction.md)."""
        payload = self._p(messages=messages, wait=wait, session_id=session_id or self.session_id)
        return self._call("remember", payload, idempotency_key=idempotency_key)

    def generate_summary(self, *, mode: str | None = None) -> Any:
        return self._call("generate_summary", self._p(mode=mode))

    def get_summary(self) -> Any:
        return self._call("get_summary", self._p())

    def get_history(self, *, limit: int | None = None, session_id: str | None = None) -> Any:
        return self._call("get_history", self._p(limit=limit, session_id=session_id))

    def get_context(
        self,
        message: str,
        *,
        system_prompt: str | None = None,
        token_budget: int | None = None,
        k: int | None = None,
        history_limit: int | None = None,
        session_id: str | None = None,
    ) -> Any:
        payload = self._p(
            message=message,
            system_prompt=system_prompt,
            token_budget=token_budget,
            k=k,
            history_limit=history_limit,
            session_id=session_id,
        )
        return self._call("get_context", payload)

    def health(self) -> Any:
        return self._call("health", {})

    def stats(self) -> Any:
        return self._call("stats", {})


@dataclass(slots=True)
class _Plan:
    frames: list[bytes]
    attempts: int
    wait_ms: int
    started: float


class _Base(_Calls):
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        user_id: str | None = None,
        timeout_ms: int = 5000,
        retries: int = 2,
        raise_errors: bool = False,
        compress_bytes: int = 16_384,
        curve_dir: str | Path | None = None,
    ) -> None:
        self.address = address
        self.api_key = api_key
        self.user_id = user_id
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.raise_errors = raise_errors
        self.compress_bytes = compress_bytes
        self.curve_dir = None if curve_dir is None else Path(curve_dir)
        self.session_id: str | None = None
        self.counters = {"requests": 0, "errors": 0, "timeouts": 0, "retries": 0}
        self.last_latency_ms: float | None = None
        # Request ids: a random prefix per client and a counter (a uuid per call cost more
        # than a tenth of a cached read's round trip).
        self._rid_prefix = uuid.uuid4().hex[:16] + "-"
        self._rid_seq = itertools.count(1)

    def _configure(self, sock: zmq.Socket[Any]) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve_dir is not None:
            from zmq.auth import load_certificate

            public, secret = load_certificate(str(self.curve_dir / "client.key_secret"))
            server_public, _ = load_certificate(str(self.curve_dir / "server.key"))
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            sock.curve_serverkey = server_public
        sock.connect(self.address)

    def _frames(self, action: str, payload: dict[str, Any], idem: str | None) -> list[bytes]:
        return protocol.encode_request(
            action,
            payload,
            request_id=f"{self._rid_prefix}{next(self._rid_seq)}",
            api_key=self.api_key,
            idempotency_key=idem,
            compress_bytes=self.compress_bytes,
        )

    def _plan(
        self, action: str, payload: dict[str, Any], idem: str | None, timeout_ms: int | None
    ) -> _Plan:
        """What one call sends and how often: reads, and writes with an idempotency key, are
        retried after a timeout; other writes are tried once."""
        return _Plan(
            frames=self._frames(action, payload, idem),
            attempts=1 + self.retries if action in READS or idem is not None else 1,
            wait_ms=self.timeout_ms if timeout_ms is None else timeout_ms,
            started=time.perf_counter(),
        )

    def _sending(self, attempt: int) -> None:
        self.counters["requests"] += 1
        if attempt:
            self.counters["retries"] += 1

    def _missed(self, action: str, attempt: int) -> None:
        self.counters["timeouts"] += 1
        log.warning("no reply to %s from %s (attempt %d)", action, self.address, attempt + 1)
        self._reset()  # a REQ socket without its reply cannot send again

    @abc.abstractmethod
    def _reset(self) -> None:
        """Close the socket; the next call opens a new one."""

    def _timed_out(self, action: str, wait_ms: int) -> Reply:
        self.counters["errors"] += 1
        err = UnavailableError(
            f"no reply from {self.address} within {wait_ms} ms ({action})",
            {"address": self.address, "timeout_ms": wait_ms},
        )
        return {"status": "error", "error": err.to_dict(), "request_id": None}

    def _finish(self, reply: Reply, started: float, after: Callable[[Reply], None] | None) -> Any:
        self.last_latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if reply.get("status") != "success":
            self.counters["errors"] += 1
        if after is not None:
            after(reply)
        if self.raise_errors and reply.get("status") != "success":
            raise protocol.error_of(reply)
        return reply

    def diagnostics(self) -> dict[str, Any]:
        """What this client knows about itself: address, session, counters, last latency."""
        return {
            "address": self.address,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "timeout_ms": self.timeout_ms,
            "retries": self.retries,
            "curve": self.curve_dir is not None,
            "last_latency_ms": self.last_latency_ms,
            **self.counters,
        }


class MemoryClient(_Base):
    """Blocking client (seed 004's `MemoryClient`): `MemoryClient()` talks to
    tcp://127.0.0.1:5570."""

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        super().__init__(address, **options)
        self._ctx: zmq.Context[zmq.Socket[Any]] = zmq.Context.instance()
        self._sock: zmq.Socket[Any] | None = None
        self._wait_ms = -1  # the socket's receive timeout

    def _socket(self, wait_ms: int) -> zmq.Socket[Any]:
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._configure(self._sock)
            self._wait_ms = -1
        if wait_ms != self._wait_ms:
            # A receive timeout instead of poll(): a Python-level poll per call cost about a
            # third of a cached read's round trip.
            self._sock.setsockopt(zmq.RCVTIMEO, wait_ms)
            self._wait_ms = wait_ms
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def _call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        after: Callable[[Reply], None] | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        plan = self._plan(action, payload, idempotency_key, timeout_ms)
        for attempt in range(plan.attempts):
            self._sending(attempt)
            sock = self._socket(plan.wait_ms)
            if len(plan.frames) == 1:
                sock.send(plan.frames[0])
            else:
                sock.send_multipart(plan.frames)
            try:
                frames = [sock.recv()]
            except zmq.Again:
                self._missed(action, attempt)
                continue
            while sock.get(_RCVMORE):
                frames.append(sock.recv())
            reply = protocol.decode_reply(frames, _MAX_REPLY)
            return self._finish(reply, plan.started, after)
        return self._finish(self._timed_out(action, plan.wait_ms), plan.started, after)

    def close(self) -> None:
        self._reset()

    def __del__(self) -> None:  # seed 004's example never closes its client
        if getattr(self, "_sock", None) is not None:
            self._reset()

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncMemoryClient(_Base):
    """The asyncio twin: the same methods, awaited."""

    def __init__(self, address: str = DEFAULT_ADDRESS, **options: Any) -> None:
        super().__init__(address, **options)
        self._ctx = zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._configure(self._sock)
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    async def _call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        after: Callable[[Reply], None] | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        plan = self._plan(action, payload, idempotency_key, timeout_ms)
        for attempt in range(plan.attempts):
            self._sending(attempt)
            sock = self._socket()
            await sock.send_multipart(plan.frames)
            if await sock.poll(plan.wait_ms):
                reply = protocol.decode_reply(await sock.recv_multipart(), _MAX_REPLY)
                return self._finish(reply, plan.started, after)
            self._missed(action, attempt)
        return self._finish(self._timed_out(action, plan.wait_ms), plan.started, after)

    async def close(self) -> None:
        self._reset()

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None:
            self._reset()

    async def __aenter__(self) -> AsyncMemoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
