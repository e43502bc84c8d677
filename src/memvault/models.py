"""Records and input shapes. Input shapes carry the limits, so every door validates alike."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from memvault import limits

Content = str | dict[str, Any]
Role = Literal["user", "assistant", "system", "tool"]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: not text UTF-8 holds
_NAMESPACE_RE = re.compile(limits.NAMESPACE_PATTERN)
_TYPE_RE = re.compile(limits.MEMORY_TYPE_PATTERN)


# ----------------------------------------------------------------------------- checks
def too_large(what: str, limit: int, got: int, unit: str = "characters") -> PydanticCustomError:
    return PydanticCustomError(
        "payload_too_large",
        "{what} is {got} {unit}; the limit is {limit}",
        {"what": what, "got": got, "limit": limit, "unit": unit},
    )


def invalid(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def check_embedding(value: Any) -> Any:
    """A caller-given vector as a 1-D float32 numpy array of at most
    `limits.MAX_EMBEDDING_DIMENSION` numbers. Its values (finite, not all zero) and its
    length against the embedder's dimension are checked by the service
    (`embed.check_vectors`, one batch at a time), the only reader of this field."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        arr = value  # the library's common case: nothing to convert
    elif isinstance(value, str | bytes | dict | bool):
        raise invalid("invalid_embedding", "embedding must be a list of numbers")
    else:
        try:
            with np.errstate(over="ignore"):  # past float32's range becomes inf: refused later
                arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise invalid("invalid_embedding", "embedding must be a list of numbers") from None
    if arr.ndim != 1 or not 1 <= arr.shape[0] <= limits.MAX_EMBEDDING_DIMENSION:
        raise invalid(
            "invalid_embedding",
            f"embedding must be a flat list of 1 to {limits.MAX_EMBEDDING_DIMENSION} numbers",
        )
    return arr


def check_identifier(value: Any, what: str, max_chars: int) -> str:
    """User ids, keys, agent ids: non-empty text, no control characters, bounded."""
    if isinstance(value, bool):
        raise invalid("invalid_identifier", f"{what} must be a string, got a boolean")
    if isinstance(value, int):
        value = str(value)  # integer ids from older clients are accepted and stringified
    if not isinstance(value, str):
        raise invalid("invalid_identifier", f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise invalid("invalid_identifier", f"{what} must not be empty")
    if value != value.strip():
        raise invalid("invalid_identifier", f"{what} must not start or end with white space")
    if len(value) > max_chars:
        raise invalid(
            "invalid_identifier", f"{what} is {len(value)} characters; at most {max_chars}"
        )
    if _CONTROL_RE.search(value):
        raise invalid("invalid_identifier", f"{what} must not contain control characters")
    return value


def check_namespace(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(
            "invalid_namespace", f"namespace must be a string, got {type(value).__name__}"
        )
    if not value or len(value) > limits.MAX_NAMESPACE_CHARS or not _NAMESPACE_RE.match(value):
        raise invalid(
            "invalid_namespace",
            f"namespace {value[:40]!r} is malformed: 1-{limits.MAX_NAMESPACE_CHARS} characters, "
            "letters, digits and _ . : / -, starting with a letter or digit",
        )
    return value


def check_memory_type(value: Any) -> str:
    if (
        not isinstance(value, str)
        or not _TYPE_RE.match(value)
        or len(value) > limits.MAX_MEMORY_TYPE_CHARS
    ):
        raise invalid(
            "invalid_memory_type",
            f"memory_type {str(value)[:40]!r} is malformed: lower-case letters, digits and _, "
            f"starting with a letter, at most {limits.MAX_MEMORY_TYPE_CHARS} characters",
        )
    return value


def check_text(value: Any, what: str, max_chars: int = limits.MAX_CONTENT_CHARS) -> str:
    if not isinstance(value, str):
        raise invalid("invalid_text", f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise invalid("invalid_text", f"{what} must not be empty or only white space")
    if len(value) > max_chars:
        raise too_large(what, max_chars, len(value))
    if "\x00" in value:
        raise invalid("invalid_text", f"{what} must not contain NUL characters")
    if not value.isascii() and _SURROGATE_RE.search(value):
        raise invalid("invalid_text", f"{what} must not contain lone surrogates (not Unicode text)")
    return value


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def check_json(value: Any, what: str, max_bytes: int = limits.MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object of bounded size and depth whose values survive a round trip."""
    if not isinstance(value, dict):
        raise invalid("invalid_json", f"{what} must be a JSON object, got {type(value).__name__}")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise invalid("invalid_json", f"{what} must hold only JSON values: {exc}") from None
    try:
        size = len(encoded.encode())
    except UnicodeEncodeError:
        raise invalid(
            "invalid_json", f"{what} must not contain lone surrogates (not Unicode text)"
        ) from None
    if size > max_bytes:
        raise too_large(what, max_bytes, size, "bytes")
    if _depth(value) > limits.MAX_JSON_DEPTH:
        raise invalid(
            "invalid_json", f"{what} is nested deeper than {limits.MAX_JSON_DEPTH} levels"
        )
    result: dict[str, Any] = json.loads(encoded)
    return result


def check_content(value: Any) -> Content:
    if isinstance(value, dict):
        obj = check_json(value, "content", limits.MAX_CONTENT_CHARS)
        text = obj.get("text")
        if text is not None:
            check_text(text, "content.text")
        return obj
    return check_text(value, "content")


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise invalid("invalid_tags", f"tags must be a list of strings, got {type(value).__name__}")
    if len(value) > limits.MAX_TAGS:
        raise too_large("tags", limits.MAX_TAGS, len(value), "tags")
    out: list[str] = []
    for tag in value:
        if not isinstance(tag, str):
            raise invalid("invalid_tags", f"each tag must be a string, got {type(tag).__name__}")
        tag = tag.strip()
        if not tag:
            raise invalid("invalid_tags", "tags must not be empty")
        if len(tag) > limits.MAX_TAG_CHARS:
            raise too_large("a tag", limits.MAX_TAG_CHARS, len(tag))
        if _CONTROL_RE.search(tag):
            raise invalid("invalid_tags", "tags must not contain control characters")
        if tag not in out:
            out.append(tag)
    return out


def check_importance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(
            "invalid_importance", f"importance must be a number, got {type(value).__name__}"
        )
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise invalid("invalid_importance", f"importance must be in [0, 1], got {value}")
    return float(value)


def check_ttl(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid("invalid_ttl", "ttl_seconds must be a number of seconds")
    if not 1 <= value <= limits.MAX_TTL_SECONDS:
        raise invalid(
            "invalid_ttl", f"ttl_seconds must be in [1, {limits.MAX_TTL_SECONDS}], got {value}"
        )
    return int(value)


def to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise invalid(
            "invalid_datetime", f"{value.isoformat()} is out of range once converted to UTC"
        ) from None


def content_text(content: Content) -> str:
    """The searchable text of a content value: the string, or an object's `text` field,
    or the object's JSON when it has none."""
    if isinstance(content, str):
        return content
    text = content.get("text")
    if isinstance(text, str):
        return text
    return json.dumps(content, ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------------- records
R = TypeVar("R", bound=BaseModel)

VectorLike = Sequence[float] | Any
"""A vector given by a caller: a list of floats or a 1-D numpy array (taken as is)."""


_new = object.__new__
_set = object.__setattr__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def construct(cls: type[R], values: dict[str, Any]) -> R:
    """Build a record from trusted values holding every field, without validation.

    What `model_construct` does minus its per-field default handling, which cost 20 us a
    row and dominated a 100-row listing (profiled with cProfile on `list_memories`); the
    slots are set through their descriptors (0.7 us against 1.0 us with `setattr`).
    Callers: the storage codecs (rows memvault wrote) and the service (values it validated).
    """
    obj = _new(cls)
    _set(obj, "__dict__", values)
    _set_fields(obj, set(values))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Memory(Record):
    """One stored memory, as it is now."""

    memory_id: str
    user_id: str
    namespace: str = "default"
    key: str
    memory_type: str = "note"
    content: Content
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    category: str | None = None
    importance: float = Field(0.5, ge=0.0, le=1.0)
    access_count: int = 0
    last_accessed_at: datetime | None = None
    expires_at: datetime | None = None
    session_id: str | None = None
    agent_id: str | None = None
    version: int = 1
    deleted_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: str | None = None

    @property
    def text(self) -> str:
        """The searchable text (content, or content's `text` field)."""
        return content_text(self.content)

    def is_expired(self, now: datetime) -> bool:
        """True once `expires_at` has passed (seed 001's `is_expired`)."""
        return self.expires_at is not None and self.expires_at <= now

    def is_valid(self, at: datetime) -> bool:
        """True when the fact it states holds at `at` (between `valid_from`, or its
        creation, and `valid_to`)."""
        start = self.valid_from or self.created_at
        return start <= at and (self.valid_to is None or self.valid_to > at)


def check_category(v: Any) -> str:
    return check_identifier(v, "category", limits.MAX_CATEGORY_CHARS)


def check_key(v: Any) -> str:
    return check_identifier(v, "key", limits.MAX_KEY_CHARS)


def check_scope_id(v: Any) -> str:
    """A session or agent id."""
    return check_identifier(v, "id", limits.MAX_AGENT_ID_CHARS)


def check_metadata(v: Any) -> dict[str, Any]:
    return check_json(v, "metadata")


class _MemoryFields(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("tags", mode="before", check_fields=False)
    @classmethod
    def _tags(cls, v: Any) -> Any:
        return v if v is None else check_tags(v)

    @field_validator("metadata", mode="before", check_fields=False)
    @classmethod
    def _metadata(cls, v: Any) -> Any:
        return v if v is None else check_metadata(v)

    @field_validator("importance", mode="before", check_fields=False)
    @classmethod
    def _importance(cls, v: Any) -> Any:
        return v if v is None else check_importance(v)

    @field_validator("memory_type", mode="before", check_fields=False)
    @classmethod
    def _type(cls, v: Any) -> Any:
        return v if v is None else check_memory_type(v)

    @field_validator("content", mode="before", check_fields=False)
    @classmethod
    def _content(cls, v: Any) -> Any:
        return v if v is None else check_content(v)

    @field_validator("ttl_seconds", mode="before", check_fields=False)
    @classmethod
    def _ttl(cls, v: Any) -> Any:
        return v if v is None else check_ttl(v)

    @field_validator("category", mode="before", check_fields=False)
    @classmethod
    def _category(cls, v: Any) -> Any:
        return v if v is None else check_category(v)

    @field_validator("session_id", "agent_id", mode="before", check_fields=False)
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return v if v is None else check_scope_id(v)

    @field_validator("expires_at", "valid_from", "valid_to", mode="after", check_fields=False)
    @classmethod
    def _expires(cls, v: datetime | None) -> datetime | None:
        return v if v is None else to_utc(v)


class NewMemory(_MemoryFields):
    """What a caller gives to create a memory. `key` is generated when absent."""

    content: Content
    namespace: str = "default"
    key: str | None = None
    memory_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    category: str | None = None
    importance: float | None = None  # None: derived from type, category and content
    ttl_seconds: int | None = None
    expires_at: AwareDatetime | None = None
    session_id: str | None = None
    agent_id: str | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    embedding: Any = None  # a list of floats or a 1-D numpy array, kept as float32 numpy

    @field_validator("namespace", mode="before")
    @classmethod
    def _namespace(cls, v: Any) -> Any:
        return check_namespace(v)

    @field_validator("embedding", mode="before")
    @classmethod
    def _embedding(cls, v: Any) -> Any:
        return v if v is None else check_embedding(v)

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> Any:
        return v if v is None else check_key(v)

    @model_validator(mode="after")
    def _one_expiry(self) -> NewMemory:
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise invalid("invalid_ttl", "give ttl_seconds or expires_at, not both")
        _check_validity(self.valid_from, self.valid_to)
        return self


_NEW_DEFAULTS: dict[str, Any] = {
    name: field.default
    for name, field in NewMemory.model_fields.items()
    if field.default_factory is None and not field.is_required()
}


# The fields of a new memory that `new_memory_values` checks itself (the same checks as the model's
# validators); True for those that may be None.
_PLAIN_FIELDS: dict[str, tuple[Callable[[Any], Any] | None, bool]] = {
    "content": (check_content, False),
    "namespace": (check_namespace, False),
    "embedding": (check_embedding, True),
    "memory_type": (check_memory_type, True),
    "tags": (check_tags, False),
    "metadata": (check_metadata, False),
    "importance": (check_importance, True),
    "category": (check_category, True),
    "key": (check_key, True),
    "session_id": (check_scope_id, True),
    "agent_id": (check_scope_id, True),
    "ttl_seconds": (check_ttl, True),
    "expires_at": (None, True),  # times: only their absence is checked here
    "valid_from": (None, True),
    "valid_to": (None, True),
}


def new_memory_values(data: dict[str, Any]) -> dict[str, Any] | None:
    """The field values `NewMemory.model_validate(data)` would hold (every field, defaults
    included), for the usual shapes of a new memory (a batch writer's item: content, an
    embedding, a namespace, tags...): the same checks, without pydantic's machinery. None
    where the model must validate instead: a field not checked here (times, validity), an
    explicit null where the model refuses it, or a value a check refuses (the model then
    says why, with its error details). `add_many` builds its memories from these values
    (`service.memories.build_memory_from`) without making a `NewMemory` of them."""
    if "content" not in data:
        return None
    values: dict[str, Any] = dict(_NEW_DEFAULTS)
    values["metadata"], values["tags"] = {}, []
    for name, value in data.items():
        rule = _PLAIN_FIELDS.get(name)
        if rule is None:
            return None
        if value is None:
            if rule[1]:
                continue
            return None
        if rule[0] is None:
            return None
        try:
            value = rule[0](value)
        except ValueError:
            return None
        values[name] = dict(value) if isinstance(value, dict) else value  # as pydantic copies
    return values


class MemoryPatch(_MemoryFields):
    """A partial update: only the fields given change. `expires_at=None` (or
    `ttl_seconds=None`) given explicitly removes the expiry."""

    content: Content | None = None
    memory_type: str | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    category: str | None = None
    importance: float | None = None
    ttl_seconds: int | None = None
    expires_at: AwareDatetime | None = None
    session_id: str | None = None
    agent_id: str | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None

    @model_validator(mode="after")
    def _sane(self) -> MemoryPatch:
        given = self.model_fields_set
        if not given:
            raise invalid("empty_patch", "an update must change at least one field")
        for name in ("content", "memory_type", "metadata", "tags", "importance"):
            if name in given and getattr(self, name) is None:
                raise invalid("invalid_patch", f"{name} cannot be set to null")
        if {"ttl_seconds", "expires_at"} <= given and (
            self.ttl_seconds is not None and self.expires_at is not None
        ):
            raise invalid("invalid_ttl", "give ttl_seconds or expires_at, not both")
        return self


METADATA_RANGE_OPS = ("gt", "gte", "lt", "lte", "ne")


def _check_validity(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise invalid("invalid_validity", "valid_from must be before valid_to")


def _check_range(name: str, value: dict[str, Any]) -> None:
    """A metadata range filter: operators of `METADATA_RANGE_OPS` on numbers or strings."""
    if not value or any(op not in METADATA_RANGE_OPS for op in value):
        raise invalid(
            "invalid_filter",
            f"metadata filter {name!r}: a range uses the operators {list(METADATA_RANGE_OPS)}",
        )
    for op, bound in value.items():
        if isinstance(bound, bool) or not isinstance(bound, int | float | str):
            raise invalid(
                "invalid_filter",
                f"metadata filter {name!r}.{op} must be a number or a string",
            )


class Filters(BaseModel):
    """What `list_memories` and `search` narrow by. Unknown keys are rejected. `metadata`
    maps a key to a value (equality) or to a range such as `{"gte": 1, "lt": 5}`
    (operators `gt`, `gte`, `lt`, `lte`, `ne`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: list[str] | None = None
    memory_types: list[str] | None = None
    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    metadata: dict[str, Any] | None = None
    category: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    min_importance: float | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    updated_after: AwareDatetime | None = None
    updated_before: AwareDatetime | None = None
    include_deleted: bool = False
    include_expired: bool = False
    # Temporal validity: what held at `as_of` (default: now); `include_superseded` also
    # returns memories whose validity has ended (replaced by a newer fact, or closed).
    as_of: AwareDatetime | None = None
    include_superseded: bool = False

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespaces(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = [v]
        return [check_namespace(x) for x in v]

    @field_validator("memory_types", mode="before")
    @classmethod
    def _types(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = [v]
        return [check_memory_type(x) for x in v]

    @field_validator("tags_any", "tags_all", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = [v]
        return check_tags(v)

    @field_validator("metadata", mode="before")
    @classmethod
    def _meta(cls, v: Any) -> Any:
        if v is None:
            return v
        obj = check_json(v, "metadata filter")
        for name, value in obj.items():
            if '"' in name:  # SQLite's JSON paths cannot name such a key
                raise invalid(
                    "invalid_filter", f"metadata filter key {name!r} must not contain '\"'"
                )
            if isinstance(value, dict):
                _check_range(name, value)
            elif isinstance(value, list):
                raise invalid(
                    "invalid_filter",
                    f"metadata filter {name!r} must compare with a string, number, boolean, "
                    "null, or a range such as {'gte': 1, 'lt': 5}",
                )
        return obj

    @field_validator("min_importance", mode="before")
    @classmethod
    def _imp(cls, v: Any) -> Any:
        return v if v is None else check_importance(v)

    @field_validator("created_after", "created_before", "updated_after", "updated_before", "as_of")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v if v is None else to_utc(v)

    @model_validator(mode="after")
    def _ranges(self) -> Filters:
        for lo, hi in (("created_after", "created_before"), ("updated_after", "updated_before")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a >= b:
                raise invalid("invalid_filter", f"{lo} must be earlier than {hi}")
        return self


class Page(Record):
    """One page of a listing; pass `next_cursor` back to get the next one."""

    items: list[Memory]
    next_cursor: str | None = None


class SearchHit(Record):
    """One search result: the memory, its final score and, with `explain=True`, the parts
    the score was made of (normalised `lexical` and `vector` relevance, `importance`,
    `recency`, `access`, and the raw `bm25` and `cosine`)."""

    memory: Memory
    score: float
    explain: dict[str, float] | None = None


class HistoryEntry(Record):
    """One change to a memory: what it became, when, by whom and how.

    `history_id` orders entries; it is 0 for the creation of a memory that has not changed
    since and was created without an actor or a reason (its row is stored at the first
    change)."""

    history_id: int
    memory_id: str
    version: int
    operation: str
    changed_at: datetime
    actor: str | None = None
    reason: str | None = None
    snapshot: dict[str, Any]


class User(Record):
    user_id: str
    username: str | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = None
    created_at: datetime
    updated_at: datetime


class Message(Record):
    message_id: str
    user_id: str
    role: str
    content: str
    session_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class Session(Record):
    session_id: str
    user_id: str
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: Literal["active", "ended"] = "active"
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None


JOB_STATUSES = ("pending", "running", "done", "failed")


class Job(Record):
    """Background work kept in the store: extracting memories from a message (`extract`),
    regenerating a user's summary (`summary`). `pending` until a worker leases it; `done`
    with its `result`, or `failed` with `last_error` after the last attempt."""

    job_id: str
    user_id: str
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    run_after: datetime
    lease_token: str | None = Field(None, exclude=True)
    lease_until: datetime | None = None
    last_error: str | None = None
    result: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class JobReport(Record):
    """What one `run_jobs` call did."""

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0


class Summary(Record):
    user_id: str
    content: str
    created_at: datetime
    updated_at: datetime


class Metrics(Record):
    """Per-user usage counters and the daily streak."""

    user_id: str
    total_messages: int = 0
    messages_by_role: dict[str, int] = Field(default_factory=dict)
    counters: dict[str, int] = Field(default_factory=dict)
    first_interaction_at: datetime | None = None
    last_interaction_at: datetime | None = None
    current_streak: int = 0
    longest_streak: int = 0
    last_active_date: date | None = None


class ContextEntry(Record):
    key: str
    value: Any
    updated_at: datetime
    updated_by: str | None = None


class ApiKey(Record):
    """An API key as stored: never its secret. `user_id` None is an admin key."""

    key_id: str
    prefix: str
    user_id: str | None = None
    name: str | None = None
    rate_per_minute: int | None = None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def admin(self) -> bool:
        return self.user_id is None


class AuditEntry(Record):
    """One audited action: who did what to whom, and when."""

    audit_id: int
    at: datetime
    actor: str | None = None
    action: str
    user_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ChatMessage(Record):
    """One message of an OpenAI-style `messages` list."""

    role: str
    content: str


class ChatContext(Record):
    """What `context()` builds for a chat model: the messages, and what went into them."""

    messages: list[ChatMessage]
    memory_ids: list[str] = Field(default_factory=list)
    token_estimate: int = 0
    token_budget: int = 0
