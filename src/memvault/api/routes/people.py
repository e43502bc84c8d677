"""A user's records: `/v1/users/{user_id}/...` (profile, messages, facts, permanent memories,
sessions, summary, metrics and streaks, export, erase). `me` stands for the key's own user.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from memvault import limits
from memvault.api import schemas
from memvault.api.deps import Who, answer
from memvault.api.errors import ERROR_RESPONSES
from memvault.errors import InvalidArgumentError, NotFoundError
from memvault.models import Job, Memory, Message, Metrics, Session, Summary, User
from memvault.service.archive import parse_lines
from memvault.service.export import document

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/users", tags=["users"])

Limit = Annotated[int | None, Query(ge=1, le=limits.MAX_PAGE_LIMIT)]


@router.get("", response_model=list[User])
async def list_users(who: Who, limit: Limit = None, after: str | None = None) -> Response:
    """Users in id order (admin); pass the last id as `after` for the next page."""
    who.require_admin()
    return answer(await who.vault.list_users(limit=limit, after=after))


@router.get("/{user_id}", response_model=User)
async def get_user(user_id: str, who: Who) -> Response:
    return answer(await who.vault.get_user(who.user(user_id)))


@router.put("/{user_id}", response_model=User)
async def put_user(user_id: str, body: schemas.UserUpdate, who: Who) -> Response:
    """Create the user when new, and set its name, time zone or profile fields (merged into
    the stored profile unless `replace_profile`)."""
    uid = who.user(user_id)
    await who.vault.get_or_create_user(uid)
    if body.username is None and body.profile is None and body.timezone is None:
        return answer(await who.vault.get_user(uid))
    user = await who.vault.update_user(
        uid,
        username=body.username,
        profile=body.profile,
        timezone=body.timezone,
        replace_profile=body.replace_profile,
    )
    return answer(user)


@router.delete("/{user_id}", response_model=dict[str, int])
async def erase_user(user_id: str, who: Who) -> Response:
    """Hard-delete everything the user owns, its API keys too (audited). Returns the rows
    removed by kind."""
    return answer(await who.vault.erase_user(who.user(user_id), actor=who.actor))


@router.get("/{user_id}/export", responses={200: {"description": "JSON or JSONL"}})
async def export_user(
    user_id: str,
    who: Who,
    format: Literal["json", "jsonl"] = "json",
) -> Response:
    """Everything the user owns: one JSON document, or a JSONL stream of
    `{"kind": ..., "record": {...}}` lines (header first)."""
    uid = who.user(user_id)
    records = who.vault.export_user(uid)
    first = await anext(records)  # raises NOT_FOUND before anything is sent
    if format == "json":

        async def again() -> AsyncIterator[tuple[str, dict[str, object]]]:
            yield first
            async for item in records:
                yield item

        return answer(await document(again()))

    async def lines() -> AsyncIterator[bytes]:
        yield _line(*first)
        async for kind, record in records:
            yield _line(kind, record)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post(
    "/{user_id}/import",
    response_model=dict[str, Any],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "an archive (JSON lines)"}
                }
            },
        }
    },
)
async def import_user(user_id: str, request: Request, who: Who, dry_run: bool = False) -> Response:
    """Import an archive of this user (`GET .../export?format=jsonl`, `memvault export
    --user`): records the store lacks are added as they were, existing ones are left alone
    (importing twice adds nothing). Every record must belong to the user. `dry_run` checks
    and counts without writing. Bodies are limited by `max_request_bytes`; larger archives
    go through `memvault import`."""
    uid = who.user(user_id)
    body = await request.body()
    report = await who.vault.import_archive(
        parse_lines(body.splitlines()), dry_run=dry_run, user_id=uid
    )
    return answer(report.as_dict())


def _line(kind: str, record: dict[str, object]) -> bytes:
    return (json.dumps({"kind": kind, "record": record}, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------------- messages
@router.post("/{user_id}/messages", status_code=201, response_model=Message, tags=["messages"])
async def add_message(user_id: str, body: schemas.MessageCreate, who: Who) -> Response:
    """Append to the conversation history (capped at `max_messages`, oldest dropped)."""
    msg = await who.vault.add_message(
        who.user(user_id),
        body.role,
        body.content,
        session_id=body.session_id,
        metadata=body.metadata,
        extract=body.extract,
    )
    return answer(msg, 201)


@router.post(
    "/{user_id}/remember",
    status_code=202,
    response_model=schemas.Remembered,
    tags=["extraction"],
    responses={200: {"model": schemas.Remembered, "description": "with wait: extracted"}},
)
async def remember(user_id: str, body: schemas.RememberRequest, who: Who) -> Response:
    """Add a conversation's messages to the history and queue those of the extracting roles
    for memory extraction (202: the worker does it; 200 with `wait`: done before the
    answer)."""
    uid = who.user(user_id)
    stored = await who.vault.remember(
        uid,
        [m.fields() for m in body.messages],
        session_id=body.session_id,
        wait=body.wait,
    )
    counts = await who.vault.job_counts(uid)
    return answer({"messages": stored, "jobs": counts}, 200 if body.wait else 202)


@router.get("/{user_id}/jobs", response_model=list[Job], tags=["extraction"])
async def list_jobs(
    user_id: str,
    who: Who,
    status: Literal["pending", "running", "done", "failed"] | None = None,
    limit: Limit = None,
    before: str | None = None,
) -> Response:
    """The user's extraction and summary jobs, newest first (`before`: the last job_id of
    the previous page)."""
    uid = who.user(user_id)
    return answer(await who.vault.list_jobs(user_id=uid, status=status, limit=limit, before=before))


@router.get("/{user_id}/jobs/{job_id}", response_model=Job, tags=["extraction"])
async def get_job(user_id: str, job_id: str, who: Who) -> Response:
    return answer(await who.vault.get_job(job_id, user_id=who.user(user_id)))


@router.post("/{user_id}/jobs/retry", response_model=dict[str, int], tags=["extraction"])
async def retry_jobs(user_id: str, body: schemas.JobRetry, who: Who) -> Response:
    """Queue the user's failed jobs (or those named) again."""
    n = await who.vault.retry_jobs(body.job_ids, user_id=who.user(user_id))
    return answer({"queued": n})


@router.get("/{user_id}/messages", response_model=list[Message], tags=["messages"])
async def get_messages(
    user_id: str,
    who: Who,
    limit: Annotated[int | None, Query(ge=1, le=limits.MAX_MESSAGES_LIMIT)] = None,
    session_id: str | None = None,
) -> Response:
    """The newest `limit` messages, oldest first."""
    uid = who.user(user_id)
    return answer(await who.vault.get_message_history(uid, limit=limit, session_id=session_id))


@router.delete("/{user_id}/messages", response_model=dict[str, int], tags=["messages"])
async def clear_messages(user_id: str, who: Who) -> Response:
    return answer({"deleted": await who.vault.clear_message_history(who.user(user_id))})


# ---------------------------------------------------------------------- facts, permanent
@router.post("/{user_id}/facts", status_code=201, response_model=Memory, tags=["facts"])
async def add_fact(user_id: str, body: schemas.FactCreate, who: Who) -> Response:
    """A fact about the user, by category (near-duplicates update the existing fact)."""
    m = await who.vault.add_user_fact(
        who.user(user_id),
        body.content,
        body.category,
        importance=body.importance,
        metadata=body.metadata,
        actor=who.actor,
    )
    return answer(m, 201)


@router.get("/{user_id}/facts", response_model=list[Memory], tags=["facts"])
async def get_facts(user_id: str, who: Who, category: str | None = None) -> Response:
    return answer(await who.vault.get_user_facts(who.user(user_id), category))


@router.post("/{user_id}/permanent", status_code=201, response_model=Memory, tags=["facts"])
async def add_permanent(user_id: str, body: schemas.PermanentCreate, who: Who) -> Response:
    """A memory that never expires."""
    fields = body.fields("content")
    m = await who.vault.add_permanent_memory(who.user(user_id), body.content, **fields)
    return answer(m, 201)


@router.get("/{user_id}/permanent", response_model=list[Memory], tags=["facts"])
async def get_permanent(user_id: str, who: Who) -> Response:
    return answer(await who.vault.get_permanent_memories(who.user(user_id)))


# ---------------------------------------------------------------------- sessions
@router.post("/{user_id}/sessions", status_code=201, response_model=Session, tags=["sessions"])
async def create_session(user_id: str, body: schemas.SessionCreate, who: Who) -> Response:
    s = await who.vault.create_session(
        who.user(user_id), metadata=body.metadata, agent_id=body.agent_id
    )
    return answer(s, 201)


@router.get("/{user_id}/sessions", response_model=list[Session], tags=["sessions"])
async def list_sessions(
    user_id: str,
    who: Who,
    status: Literal["active", "ended"] | None = None,
    limit: Limit = None,
) -> Response:
    return answer(await who.vault.list_sessions(who.user(user_id), status=status, limit=limit))


@router.get("/{user_id}/sessions/{session_id}", response_model=Session, tags=["sessions"])
async def get_session(user_id: str, session_id: str, who: Who) -> Response:
    return answer(await who.vault.get_session(who.user(user_id), session_id))


@router.patch("/{user_id}/sessions/{session_id}", response_model=Session, tags=["sessions"])
async def update_session(
    user_id: str, session_id: str, body: schemas.SessionUpdate, who: Who
) -> Response:
    """Merge `metadata` into an active session's metadata."""
    s = await who.vault.update_session(who.user(user_id), session_id, metadata=body.metadata)
    return answer(s)


@router.post("/{user_id}/sessions/{session_id}/end", response_model=Session, tags=["sessions"])
async def end_session(user_id: str, session_id: str, who: Who) -> Response:
    return answer(await who.vault.end_session(who.user(user_id), session_id))


# ---------------------------------------------------------------------- summary, metrics
@router.put("/{user_id}/summary", response_model=Summary, tags=["summary"])
async def put_summary(user_id: str, body: schemas.SummaryPut, who: Who) -> Response:
    """Replace the user's one summary (created_at kept, updated_at moves)."""
    return answer(await who.vault.save_summary(who.user(user_id), body.content))


@router.post("/{user_id}/summary/generate", response_model=Summary, tags=["summary"])
async def generate_summary(user_id: str, body: schemas.SummaryGenerate, who: Who) -> Response:
    """Build the summary from the user's most important current facts and recent messages
    and store it (extractive, or by the configured LLM)."""
    return answer(await who.vault.generate_summary(who.user(user_id), mode=body.mode))


@router.get("/{user_id}/summary", response_model=Summary, tags=["summary"])
async def get_summary(user_id: str, who: Who) -> Response:
    uid = who.user(user_id)
    summary = await who.vault.get_summary(uid)
    if summary is None:
        raise NotFoundError(f"user {uid!r} has no summary", {"user_id": uid})
    return answer(summary)


@router.get("/{user_id}/metrics", response_model=Metrics, tags=["metrics"])
async def get_metrics(user_id: str, who: Who) -> Response:
    """Message counts, counters, first and last interaction, daily streaks."""
    return answer(await who.vault.get_metrics(who.user(user_id)))


@router.post("/{user_id}/metrics/{name}/increment", response_model=Metrics, tags=["metrics"])
async def increment_metric(user_id: str, name: str, body: schemas.Increment, who: Who) -> Response:
    return answer(await who.vault.increment_metric(who.user(user_id), name, body.by))


@router.post("/{user_id}/streak", response_model=Metrics, tags=["metrics"])
async def update_streak(user_id: str, body: schemas.StreakUpdate, who: Who) -> Response:
    """Count today (or `today`) as an active day for the daily streak."""
    day = None
    if body.today is not None:
        try:
            day = date.fromisoformat(body.today)
        except ValueError:
            raise InvalidArgumentError(
                f"today must be a date such as 2026-03-01, got {body.today!r}",
                {"field": "today"},
            ) from None
    return answer(await who.vault.update_streak(who.user(user_id), today=day))
