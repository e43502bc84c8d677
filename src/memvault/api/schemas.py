"""Request bodies as the OpenAPI document shows them.

These check only JSON types; every limit and rule is checked once, in the service, so a
too-long key fails the same way here as over ZeroMQ, MCP or the library (and an oversized
field answers PAYLOAD_TOO_LARGE, not a generic shape error). Unknown fields are rejected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memvault.models import ApiKey, Memory, Message, SearchHit

Content = str | dict[str, Any]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def fields(self, *drop: str) -> dict[str, Any]:
        """The fields the caller sent, minus `drop`."""
        return {k: getattr(self, k) for k in self.model_fields_set if k not in drop}


class _Changeable(Body):
    """The fields a memory's owner may set and change."""

    memory_type: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    category: str | None = None
    importance: float | None = Field(
        None, description="0.0 to 1.0; derived from type, category and content when absent"
    )
    ttl_seconds: int | None = None
    expires_at: datetime | None = Field(None, description="ISO 8601 with an offset")
    session_id: str | None = None
    agent_id: str | None = None
    valid_from: datetime | None = Field(
        None, description="When the stated fact began to hold (default: when it was stored)"
    )
    valid_to: datetime | None = Field(
        None, description="When it stopped holding; null (the default) while it holds"
    )


class MemoryFields(_Changeable):
    content: Content = Field(description="Text, or an object with a `text` field")
    namespace: str | None = None
    key: str | None = None
    embedding: list[float] | None = Field(None, description="Your own vector (optional)")


class MemoryCreate(MemoryFields):
    user_id: str | None = Field(None, description="Required with an admin key")


class MemoryBatchCreate(Body):
    user_id: str | None = None
    items: list[MemoryFields]


class MemoryBatchGet(Body):
    user_id: str | None = None
    memory_ids: list[str]


class MemoryUpsert(_Changeable):
    user_id: str | None = None
    content: Content


class MemoryUpdate(_Changeable):
    content: Content | None = None


class Revert(Body):
    version: int


class Items(BaseModel):
    items: list[Memory]


class SearchRequest(Body):
    user_id: str | None = None
    query: str
    k: int = 10
    filters: dict[str, Any] | None = None
    memory_types: list[str] | None = None
    tags: list[str] | None = None
    mode: Literal["hybrid", "lexical", "vector"] = "hybrid"
    explain: bool = False


class SearchResults(BaseModel):
    hits: list[SearchHit]


class UserUpdate(Body):
    username: str | None = None
    profile: dict[str, Any] | None = None
    timezone: str | None = None
    replace_profile: bool = False


class MessageCreate(Body):
    role: str
    content: str
    session_id: str | None = None
    metadata: dict[str, Any] | None = None
    extract: bool | None = Field(
        None,
        description="Queue it for memory extraction (default: when an extractor is "
        "configured and the role is among `extract_roles`)",
    )


class RememberMessage(Body):
    role: str
    content: str
    session_id: str | None = None
    metadata: dict[str, Any] | None = Field(
        None, description="`speaker`: who said it, by name (facts then name them)"
    )


class RememberRequest(Body):
    messages: list[RememberMessage]
    session_id: str | None = None
    wait: bool = Field(False, description="Extract before answering instead of in the background")


class Remembered(BaseModel):
    messages: list[Message]
    jobs: dict[str, int] = Field(description="The user's jobs by status after the call")


class JobRetry(Body):
    job_ids: list[str] | None = Field(None, description="Default: every failed job of the user")


class SummaryGenerate(Body):
    mode: Literal["extractive", "llm"] | None = None


class FactCreate(Body):
    content: str
    category: str | None = None
    importance: float | None = None
    metadata: dict[str, Any] | None = None


class PermanentCreate(Body):
    content: Content
    importance: float | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None


class SessionCreate(Body):
    agent_id: str | None = None
    metadata: dict[str, Any] | None = None


class SessionUpdate(Body):
    metadata: dict[str, Any]


class SummaryPut(Body):
    content: str


class Increment(Body):
    by: int = 1


class StreakUpdate(Body):
    today: str | None = Field(None, description="YYYY-MM-DD; default: today in the user's zone")


class GlobalValue(Body):
    value: Any


class ContextRequest(Body):
    user_id: str | None = None
    message: str
    system_prompt: str | None = None
    token_budget: int | None = None
    k: int = 8
    history_limit: int = 20
    session_id: str | None = None


class KeyCreate(Body):
    user_id: str | None = None
    admin: bool = False
    name: str | None = None
    rate_per_minute: int | None = None


class KeyCreated(BaseModel):
    key: ApiKey
    secret: str = Field(description="Shown this once; store it now")


class Seed003Save(BaseModel):
    """Seed 003's body: extra fields are ignored, as they were there."""

    user_id: int | str
    content: str
