"""Memory in prompts: `/v1/context`, and seed 003's `/api/v1/memory` routes byte for byte."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from memvault.api import schemas
from memvault.api.deps import Who, answer
from memvault.api.errors import ERROR_RESPONSES
from memvault.models import ChatContext
from memvault.service import validate

router = APIRouter(responses=ERROR_RESPONSES, tags=["chat"])


@router.post("/v1/context", response_model=ChatContext)
async def context(body: schemas.ContextRequest, who: Who, request: Request) -> Response:
    """The OpenAI-style `messages` for answering `message`: system prompt, a "User Memory:"
    system message (summary and the most relevant memories), recent history, the message;
    within `token_budget`."""
    async with request.app.state.search_slots:  # it searches: `search_concurrency` applies
        ctx = await who.vault.context(
            who.user(body.user_id),
            body.message,
            system_prompt=body.system_prompt,
            token_budget=body.token_budget,
            k=body.k,
            history_limit=body.history_limit,
            session_id=body.session_id,
        )
    return answer(ctx)


class Seed003Saved(BaseModel):
    status: str = "ok"
    message: str = "Memory saved successfully"


class Seed003Memory(BaseModel):
    content: str
    created_at: str
    updated_at: str


class Seed003Got(BaseModel):
    status: str = "ok"
    memory: Seed003Memory | None


@router.post("/api/v1/memory", response_model=Seed003Saved, tags=["seed 003"])
async def save_memory(body: schemas.Seed003Save, who: Who) -> Response:
    """Seed 003: save or replace the user's one memory summary."""
    uid = who.user(validate.user_id(body.user_id))
    await who.vault.save_summary(uid, body.content)
    return JSONResponse({"status": "ok", "message": "Memory saved successfully"})


@router.get("/api/v1/memory/{user_id}", response_model=Seed003Got, tags=["seed 003"])
async def get_memory(user_id: str, who: Who) -> Response:
    """Seed 003: the user's memory summary, or `"memory": null`."""
    summary = await who.vault.get_summary(who.user(validate.user_id(user_id)))
    if summary is None:
        return JSONResponse({"status": "ok", "memory": None})
    return JSONResponse(
        {
            "status": "ok",
            "memory": {
                "content": summary.content,
                "created_at": summary.created_at.isoformat(),
                "updated_at": summary.updated_at.isoformat(),
            },
        }
    )
