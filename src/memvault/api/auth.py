"""Who is calling: an API key from `Authorization: Bearer <key>` or `X-API-Key: <key>`.

A user key acts as its user only: a route that names another user answers
PERMISSION_DENIED, and an id that belongs to another user answers NOT_FOUND (the service
scopes every read by the caller's user). An admin key acts for any user and must name one.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from memvault.client import AsyncMemVault
from memvault.service.access import Principal, secret_from_headers

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer mvk_...`",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key: `X-API-Key: mvk_...`",
    },
}
"""For the OpenAPI document (`memvault.api.app` adds them); `caller` reads the headers itself:
FastAPI's security dependencies cost two more dependency resolutions a request."""


@dataclass(frozen=True)
class Caller(Principal):
    """The credentials of a request and the vault it reaches; `key` is None only when auth
    is disabled."""

    vault: AsyncMemVault


async def caller(request: Request) -> Caller:
    """The dependency every `/v1` and seed-003 route takes."""
    return await caller_of(request.app.state, request.headers, request.scope)


async def caller_of(
    state: Any, headers: Mapping[str, str], scope: MutableMapping[str, Any]
) -> Caller:
    """The caller of a request with these `headers`, on the app whose `state` holds the vault
    and the rate limiter (the key id is noted in `scope` for the access log)."""
    vault: AsyncMemVault = state.vault
    if vault.settings.auth_disabled:
        return Caller(None, vault)
    key = await vault.authenticate(secret_from_headers(headers))
    state.rate_limiter.admit(key, vault.settings.rate_per_minute)
    scope.setdefault("state", {})["key_id"] = key.key_id
    return Caller(key, vault)
