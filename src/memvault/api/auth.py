"""Who is calling: an API key from `Authorization: Bearer <key>` or `X-API-Key: <key>`.

A user key acts as its user only: a route that names another user answers
PERMISSION_DENIED, and an id that belongs to another user answers NOT_FOUND (the service
scopes every read by the caller's user). An admin key acts for any user and must name one.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    vault: AsyncMemVault = request.app.state.vault
    if vault.settings.auth_disabled:
        return Caller(None, vault)
    key = await vault.authenticate(secret_from_headers(request.headers))
    rate = key.rate_per_minute or vault.settings.rate_per_minute
    if rate:
        request.app.state.rate_limiter.take(key.key_id, rate)
    request.scope.setdefault("state", {})["key_id"] = key.key_id
    return Caller(key, vault)
