"""The hottest calls, `GET /v1/memories/{memory_id}` and `POST /v1/search`, answered before
FastAPI's router.

Measured in process (bench note in docs/rest.md): FastAPI's routing and dependency
resolution took more than half of a point read, and under load the route ran at 0.41 of a
trivial FastAPI endpoint's rate. Here the same steps run directly: the same caller check
(`auth.caller_of`: key, rate limit), the same user rule, the same service call, the same
JSON and `ETag`, the same error envelopes (`api.errors`), and the same route label in the
metrics and the access log. The FastAPI routes stay: they document the calls in the
OpenAPI document and answer whatever this path does not take.

A search is taken only when its body is a JSON object that `schemas.SearchRequest` accepts,
parsed and validated as FastAPI does it (`json.loads`, then the model); any other body goes
to the FastAPI route, untouched, so every malformed request gets the route's own answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pydantic
import pydantic_core
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from memvault.api import errors
from memvault.api.auth import caller_of
from memvault.api.deps import search_hits
from memvault.api.schemas import SearchRequest
from memvault.errors import MemvaultError

_PATH = re.compile(r"^/v1/memories/([^/]+)$")


@dataclass(frozen=True)
class _Route:
    """What `scope["route"]` holds for the metrics and the access log (its `path`)."""

    path: str


ROUTE = _Route("/v1/memories/{memory_id}")
SEARCH_ROUTE = _Route("/v1/search")


def takes(scope: Scope) -> str | None:
    """The memory id when this request is a point read this path answers, else None."""
    if scope["method"] != "GET":
        return None
    found = _PATH.match(scope["path"])
    return None if found is None else found.group(1)


_KEY_HEADERS = (b"authorization", b"x-api-key")


def _key_headers(scope: Scope) -> dict[str, str]:
    """The two headers a key may come in (HTTP header names are case-insensitive; ASGI
    servers hand them over in lower case). A repeated header: the first one, as Starlette's
    `Headers.get` reads it."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS and name.decode() not in headers:
            headers[name.decode()] = value.decode("latin-1")
    return headers


async def _send_json(send: Send, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_search(scope: Scope) -> bool:
    """Whether this request is a search sent as JSON (its body decides the rest)."""
    if scope["method"] != "POST" or scope["path"] != "/v1/search":
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


def search_body(body: bytes) -> SearchRequest | None:
    """The search a body asks for, or None when the FastAPI route should answer it."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return SearchRequest.model_validate(data)
    except pydantic.ValidationError:
        return None


async def search(request: SearchRequest, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `POST /v1/search` as the FastAPI route does, for a body it accepts."""
    scope["route"] = SEARCH_ROUTE
    app: Any = scope["app"]
    try:
        who = await caller_of(app.state, _key_headers(scope), scope)
        hits = await search_hits(app.state, who, request)
    except MemvaultError as exc:
        await errors.memvault_error(Request(scope, receive), exc)(scope, receive, send)
        return
    await _send_json(send, pydantic_core.to_json({"hits": hits}), [])


async def get_memory(memory_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `GET /v1/memories/{memory_id}` as the FastAPI route does."""
    scope["route"] = ROUTE
    app: Any = scope["app"]
    try:
        who = await caller_of(app.state, _key_headers(scope), scope)
        query = scope["query_string"]
        user_id = QueryParams(query).get("user_id") if query else None
        m = await who.vault.get(who.user(user_id), memory_id)
    except MemvaultError as exc:
        # Anything else reaches Starlette's outermost error middleware, as a route's would.
        await errors.memvault_error(Request(scope, receive), exc)(scope, receive, send)
        return
    await _send_json(send, pydantic_core.to_json(m), [(b"etag", b'"%d"' % m.version)])
