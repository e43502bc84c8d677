"""The edge of every HTTP request, as plain ASGI (no per-request task or body copy):
request id in and out, the body size limit, metrics and the access log; point reads and
well-formed searches go to `api.fastpath`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memvault import ids
from memvault.api import errors, fastpath
from memvault.api.errors import envelope
from memvault.api.metrics import Metrics
from memvault.errors import ErrorCode

log = logging.getLogger("memvault.api.access")

_RID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Edge:
    """Wraps the app: gives each request an id (`X-Request-ID`, taken from the caller when
    well-formed), refuses bodies over `max_bytes` with PAYLOAD_TOO_LARGE (by Content-Length
    before reading, or while reading a chunked body), counts and times
    requests by route template, and logs one line per request at INFO."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, metrics: Metrics, fast: bool = True
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.fast = fast  # point reads by `api.fastpath` (False: all through FastAPI)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        status = [500]
        answered = [False]
        rid_header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                answered[0] = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        length = _content_length(scope)
        try:
            if length is None and _chunked(scope):
                body = await _read_at_most(receive, self.max_bytes)
                if body is None:
                    await _too_large(self.max_bytes, rid)(scope, receive, send_with_id)
                else:
                    await self.app(scope, _replay(body, receive), send_with_id)
            elif length is not None and length > self.max_bytes:
                await _too_large(self.max_bytes, rid)(scope, receive, send_with_id)
            elif self.fast and (memory_id := fastpath.takes(scope)) is not None:
                work = fastpath.get_memory(memory_id, scope, receive, send_with_id)
                await _fast(work, scope, receive, send_with_id, answered)
            elif self.fast and fastpath.is_search(scope):
                body = await _read_at_most(receive, self.max_bytes)
                if body is None:  # no length given, and more bytes came than the limit
                    await _too_large(self.max_bytes, rid)(scope, receive, send_with_id)
                    return
                request = fastpath.search_body(body)
                if request is None:
                    await self.app(scope, _replay(body, receive), send_with_id)
                    return
                work = fastpath.search(request, scope, receive, send_with_id)
                await _fast(work, scope, receive, send_with_id, answered)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status[0], time.perf_counter() - started, rid)

    def _observe(self, scope: Scope, status: int, elapsed: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.observe(method, template, status, elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %d",
                method,
                template,
                status,
                extra={
                    "request_id": rid,
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "key_id": scope.get("state", {}).get("key_id"),
                },
            )


async def _fast(
    work: Awaitable[None], scope: Scope, receive: Receive, send: Send, answered: list[bool]
) -> None:
    """Run a fast-path answer; an unexpected error answers as FastAPI's error layer does
    for a route (INTERNAL), unless the answer had started."""
    try:
        await work
    except Exception as exc:
        if answered[0]:
            raise
        await errors.internal_error(Request(scope, receive), exc)(scope, receive, send)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _RID_RE.match(text):
                return text
            break
    return ids.new_id("req")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int, rid: str) -> Any:
    return envelope(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"the request body is over {limit} bytes",
        {"limit_bytes": limit},
        rid,
    )


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole body of a request, or None past `limit` bytes: for a body sent without a
    length, and for a search the fast path reads (a body with a Content-Length over the
    limit is refused before it is read)."""
    parts: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped
