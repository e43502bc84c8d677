"""Keys, audit log, global context and purge: `/v1/keys`, `/v1/audit`, `/v1/global-context`,
`/v1/admin/purge`. Writes here need an admin key, except that a user key may list and revoke
its own user's keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from memvault import limits
from memvault.api import schemas
from memvault.api.deps import Who, answer
from memvault.api.errors import ERROR_RESPONSES
from memvault.errors import NotFoundError
from memvault.models import ApiKey, AuditEntry, ContextEntry

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1", tags=["admin"])


@router.post("/keys", status_code=201, response_model=schemas.KeyCreated)
async def create_key(body: schemas.KeyCreate, who: Who) -> Response:
    """Create a user key (`user_id`) or an admin key (`admin: true`); the secret is in this
    answer only."""
    who.require_admin()
    key, secret = await who.vault.create_api_key(
        body.user_id,
        admin=body.admin,
        name=body.name,
        rate_per_minute=body.rate_per_minute,
        actor=who.actor,
    )
    return answer({"key": key, "secret": secret}, 201)


@router.get("/keys", response_model=list[ApiKey])
async def list_keys(
    who: Who, user_id: str | None = None, include_revoked: bool = False
) -> Response:
    """Keys (never their secrets): a user key sees its own user's keys."""
    uid = user_id if who.admin else who.user(user_id)
    return answer(await who.vault.list_api_keys(uid, include_revoked=include_revoked))


@router.delete("/keys/{key_id}", response_model=ApiKey)
async def revoke_key(key_id: str, who: Who) -> Response:
    """Revoke a key (a user key may revoke its own user's keys)."""
    if not who.admin:
        own = await who.vault.list_api_keys(who.user(None), include_revoked=True)
        if key_id not in {k.key_id for k in own}:
            raise NotFoundError(f"no API key {key_id!r}", {"key_id": key_id})
    return answer(await who.vault.revoke_api_key(key_id, actor=who.actor))


@router.get("/audit", response_model=list[AuditEntry])
async def audit(
    who: Who,
    user_id: str | None = None,
    after: int | None = None,
    limit: Annotated[int | None, Query(ge=1, le=limits.MAX_PAGE_LIMIT)] = None,
) -> Response:
    """Audited actions, oldest first (admin); page with `after` (the last `audit_id`)."""
    who.require_admin()
    return answer(await who.vault.audit_log(user_id, after=after, limit=limit))


@router.get("/global-context", response_model=dict[str, Any], tags=["global context"])
async def get_global(who: Who) -> Response:
    """Values shared by all users, by key (any key may read)."""
    return answer(await who.vault.get_global_context())


@router.put("/global-context/{key}", response_model=ContextEntry, tags=["global context"])
async def put_global(key: str, body: schemas.GlobalValue, who: Who) -> Response:
    """Set a shared value (admin)."""
    who.require_admin()
    return answer(await who.vault.set_global_context(key, body.value, actor=who.actor))


@router.delete("/global-context/{key}", status_code=204, tags=["global context"])
async def delete_global(key: str, who: Who) -> Response:
    who.require_admin()
    await who.vault.delete_global_context(key)
    return Response(status_code=204)


@router.post("/admin/purge", response_model=dict[str, int])
async def purge(who: Who) -> Response:
    """Hard-delete expired memories and those soft-deleted past the retention period
    (admin, audited)."""
    who.require_admin()
    counts = await who.vault.purge()
    result = {"expired": counts.expired, "deleted": counts.deleted}
    await who.vault.record_audit("purge", actor=who.actor, details=result)
    return answer(result)
