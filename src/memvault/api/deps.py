"""What routes share: the vault, the caller, and fast JSON answers."""

from __future__ import annotations

import time
from typing import Annotated, Any

import pydantic_core
from fastapi import Depends, Request
from starlette.responses import Response

from memvault.api.auth import Caller, caller
from memvault.api.schemas import SearchRequest
from memvault.client import AsyncMemVault
from memvault.errors import InvalidArgumentError
from memvault.models import SearchHit


async def get_vault(request: Request) -> AsyncMemVault:
    vault: AsyncMemVault = request.app.state.vault
    return vault


Vault = Annotated[AsyncMemVault, Depends(get_vault)]
Who = Annotated[Caller, Depends(caller)]


async def search_hits(state: Any, who: Caller, body: SearchRequest) -> list[SearchHit]:
    """The search `body` asks for, as the caller may make it: the route and the fast path
    (`api.fastpath`) both run this. At most `search_concurrency` run at once (more at once
    were slower); each one's time goes to the search metrics."""
    uid = who.user(body.user_id)
    started = time.perf_counter()
    async with state.search_slots:
        hits = await who.vault.search(
            uid,
            body.query,
            k=body.k,
            filters=body.filters,
            memory_types=body.memory_types,
            tags=body.tags,
            mode=body.mode,
            explain=body.explain,
        )
    state.metrics.record_search(body.mode, time.perf_counter() - started)
    return hits


def answer(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON of records and plain values, serialised once by pydantic-core (FastAPI's own
    path validates the result against the response model again, which cost about a third
    of a point read's time)."""
    return Response(
        pydantic_core.to_json(value),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def if_match(value: str | None) -> int | None:
    """The version an `If-Match` header asks for: `"3"`, `3` or `W/"3"`; `*` means any."""
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 12:
        raise InvalidArgumentError(
            f"If-Match must be a version from the ETag header, such as '\"3\"', got {value!r}",
            {"field": "If-Match"},
        )
    return int(text)
