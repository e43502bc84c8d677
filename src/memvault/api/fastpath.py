"""The hottest call, `GET /v1/memories/{memory_id}`, answered before FastAPI's router.

Measured in process (bench note in docs/rest.md): FastAPI's routing and dependency
resolution took more than half of a point read, and under load the route ran at 0.41 of a
trivial FastAPI endpoint's rate. Here the same steps run directly: the same caller check
(`auth.caller_of`: key, rate limit), the same user rule, the same service call, the same
JSON and `ETag`, the same error envelopes (`api.errors`), and the same route label in the
metrics and the access log. The FastAPI route stays: it documents the call in the OpenAPI
document and answers whatever this path does not take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydantic_core
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from memvault.api import errors
from memvault.api.auth import caller_of
from memvault.errors import MemvaultError

_PATH = re.compile(r"^/v1/memories/([^/]+)$")


@dataclass(frozen=True)
class _Route:
    """What `scope["route"]` holds for the metrics and the access log (its `path`)."""

    path: str


ROUTE = _Route("/v1/memories/{memory_id}")


def takes(scope: Scope) -> str | None:
    """The memory id when this request is a point read this path answers, else None."""
    if scope["method"] != "GET":
        return None
    found = _PATH.match(scope["path"])
    return None if found is None else found.group(1)


_KEY_HEADERS = (b"authorization", b"x-api-key")


async def get_memory(memory_id: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `GET /v1/memories/{memory_id}` as the FastAPI route does."""
    scope["route"] = ROUTE
    app: Any = scope["app"]
    # The two headers a key may come in (HTTP header names are case-insensitive; ASGI
    # servers hand them over in lower case). A repeated header: the first one, as
    # Starlette's `Headers.get` reads it.
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS and name.decode() not in headers:
            headers[name.decode()] = value.decode("latin-1")
    try:
        who = await caller_of(app.state, headers, scope)
        query = scope["query_string"]
        user_id = QueryParams(query).get("user_id") if query else None
        m = await who.vault.get(who.user(user_id), memory_id)
    except MemvaultError as exc:
        # Anything else reaches Starlette's outermost error middleware, as a route's would.
        await errors.memvault_error(Request(scope, receive), exc)(scope, receive, send)
        return
    body = pydantic_core.to_json(m)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                (b"etag", b'"%d"' % m.version),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
