"""Rows to records and back, for drivers that hand back plain tuples (sqlite3).

Reads build frozen records without re-validating what memvault itself wrote: validation
happened on the way in, and skipping it keeps a 100-row listing well under a millisecond.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import UTC, date, datetime
from typing import Any

import zstandard

from memvault.crypto import Cipher, sealed_key_id
from memvault.errors import ConfigurationError, UnavailableError
from memvault.limits import COMPRESS_CONTENT_FROM
from memvault.models import Content, HistoryEntry, Memory, construct, content_text

MEMORY_COLUMNS = (
    "pk",
    "memory_id",
    "user_id",
    "namespace",
    "key",
    "memory_type",
    "content",
    "content_object",
    "metadata",
    "tags",
    "category",
    "importance",
    "access_count",
    "last_accessed_at",
    "expires_at",
    "session_id",
    "agent_id",
    "version",
    "deleted_at",
    "created_at",
    "updated_at",
    "valid_from",
    "valid_to",
    "superseded_by",
    "content_z",
    "enc_key",
)
MEMORY_SELECT = ", ".join(f"m.{c}" if c != "key" else 'm."key"' for c in MEMORY_COLUMNS)

_VALIDITY_FIELDS = ("valid_from", "valid_to", "superseded_by")
_EMPTY_LIST = "[]"
_EMPTY_OBJ = "{}"


_last_ts: tuple[datetime | None, str | None] = (None, None)


def ts(value: datetime | None) -> str | None:
    """Aware datetime -> fixed-width UTC text that sorts like the instant it names.

    A batch stamps every row with one `now`, so the last conversion is remembered."""
    global _last_ts
    if value is None:
        return None
    last = _last_ts
    if last[0] is value:
        return last[1]
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    _last_ts = (value, text)
    return text


_iso = datetime.fromisoformat


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def dumps(value: Any) -> str:
    if not value:
        if value == {}:
            return _EMPTY_OBJ
        if value == []:
            return _EMPTY_LIST
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_TAGS_SEEN: dict[str, tuple[str, ...]] = {}
_TAGS_SEEN_MAX = 4096


def loads_tags(value: str) -> list[str]:
    """Tag lists repeat across rows: parsed ones are remembered (a bounded table)."""
    if value == _EMPTY_LIST:
        return []
    got = _TAGS_SEEN.get(value)
    if got is None:
        if len(_TAGS_SEEN) >= _TAGS_SEEN_MAX:
            _TAGS_SEEN.clear()
        got = _TAGS_SEEN[value] = tuple(json.loads(value))
    return list(got)


def loads_obj(value: str | None) -> dict[str, Any]:
    if value is None or value == _EMPTY_OBJ:
        return {}
    out: dict[str, Any] = json.loads(value)
    return out


_ZIP = threading.local()


def _zip(text: str) -> bytes:
    """zstd at level 3 (a compressor per thread: they are not thread-safe)."""
    z = getattr(_ZIP, "c", None)
    if z is None:
        z = _ZIP.c = zstandard.ZstdCompressor(level=3)
    out: bytes = z.compress(text.encode())
    return out


def unzip(blob: bytes | memoryview) -> str:
    d = getattr(_ZIP, "d", None)
    if d is None:
        d = _ZIP.d = zstandard.ZstdDecompressor()
    text: str = d.decompress(bytes(blob)).decode()
    return text


def _seal(cipher: Cipher, m: Memory) -> bytes:
    """A memory's content and metadata as one sealed blob (zstd inside when large)."""
    data = json.dumps(
        {"c": m.content, "m": m.metadata}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    data = b"z" + _zip_bytes(data) if len(data) > COMPRESS_CONTENT_FROM else b"j" + data
    return cipher.encrypt(data, f"memories/{m.memory_id}")


def _zip_bytes(data: bytes) -> bytes:
    z = getattr(_ZIP, "c", None)
    if z is None:
        z = _ZIP.c = zstandard.ZstdCompressor(level=3)
    out: bytes = z.compress(data)
    return out


def unseal(
    cipher: Cipher | None, memory_id: str, blob: bytes | memoryview
) -> tuple[Content, dict[str, Any]]:
    if cipher is None:
        raise UnavailableError(
            f"memory {memory_id!r} is encrypted and no key is configured",
            {"memory_id": memory_id},
        )
    try:
        data = cipher.decrypt(bytes(blob), f"memories/{memory_id}")
    except ConfigurationError as exc:
        raise UnavailableError(str(exc), {"memory_id": memory_id}) from None
    body = data[1:]
    if data[:1] == b"z":
        d = getattr(_ZIP, "d", None)
        if d is None:
            d = _ZIP.d = zstandard.ZstdDecompressor()
        body = d.decompress(body)
    obj = json.loads(body)
    return obj["c"], obj["m"]


def content_hash(content: Content) -> str:
    """Hash of the normalised text: exact-duplicate detection across white space and case."""
    normal = " ".join(content_text(content).split()).casefold()
    return hashlib.sha256(normal.encode()).hexdigest()


def memory_from_row(
    row: tuple[Any, ...],
    access: tuple[int, str] | None = None,
    cipher: Cipher | None = None,
) -> Memory:
    """A memory from its row; `access` adds (count, last time) not yet flushed to the row;
    `cipher` opens a sealed row (`enc_key` set)."""
    (
        _pk,
        memory_id,
        user_id,
        namespace,
        key,
        memory_type,
        content,
        content_object,
        metadata,
        tags,
        category,
        importance,
        access_count,
        last_accessed_at,
        expires_at,
        session_id,
        agent_id,
        version,
        deleted_at,
        created_at,
        updated_at,
        valid_from,
        valid_to,
        superseded_by,
        content_z,
        enc_key,
    ) = row
    if access is not None:
        access_count += access[0]
        last_accessed_at = access[1]
    if enc_key is not None:
        body, meta = unseal(cipher, memory_id, content_z)
    else:
        body = (
            json.loads(content_object)
            if content_object is not None
            else content
            if content_z is None
            else unzip(content_z)
        )
        meta = loads_obj(metadata)
    return construct(
        Memory,
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "namespace": namespace,
            "key": key,
            "memory_type": memory_type,
            "content": body,
            "metadata": meta,
            "tags": loads_tags(tags),
            "category": category,
            "importance": importance,
            "access_count": access_count,
            "last_accessed_at": None if last_accessed_at is None else _iso(last_accessed_at),
            "expires_at": None if expires_at is None else _iso(expires_at),
            "session_id": session_id,
            "agent_id": agent_id,
            "version": version,
            "deleted_at": None if deleted_at is None else _iso(deleted_at),
            "created_at": _when(created_at),
            "updated_at": _when(updated_at),
            "valid_from": None if valid_from is None else _iso(valid_from),
            "valid_to": None if valid_to is None else _iso(valid_to),
            "superseded_by": superseded_by,
        },
    )


_last_when: tuple[str, datetime] = ("", datetime.min.replace(tzinfo=UTC))


def _when(text: str) -> datetime:
    """A stored timestamp as a datetime. Rows written in one batch share their stamps and
    a memory never changed has `updated_at == created_at`: the last one parsed is reused
    (datetimes are immutable)."""
    global _last_when
    last = _last_when
    if text == last[0]:
        return last[1]
    value = _iso(text)
    _last_when = (text, value)
    return value


INSERT_COLUMNS = (*(c for c in MEMORY_COLUMNS if c != "pk"), "content_hash")
"""The columns `memory_row` gives values for, in its order (every stored column of a memory
but `pk` and `search_context`)."""


def memory_row(m: Memory, cipher: Cipher | None = None) -> tuple[Any, ...]:
    """Column values for an insert or a full-row update, in `INSERT_COLUMNS` order (a tuple:
    SQLite binds a batch's rows by position, 3.5 us a row less than by name); with `cipher`,
    content and metadata are sealed into `content_z` (`content` stays empty, so nothing of
    it is indexed) and the content hash is keyed."""
    if cipher is not None:
        plain = memory_row(m.model_copy(update={"content": "", "metadata": {}}))
        return (  # the last three: content_z, enc_key, content_hash
            *plain[:-3],
            _seal(cipher, m),
            cipher.key_id,
            cipher.keyed_hash(content_hash(m.content)),
        )
    d = m.__dict__  # the fields, read as a dict: 0.7 us a row less than 24 attributes
    content = d["content"]
    text = content if isinstance(content, str) else content_text(content)
    zipped = None
    if len(text) > COMPRESS_CONTENT_FROM:
        zipped = _zip(text)
        text = text[:COMPRESS_CONTENT_FROM]
    seen, expires, deleted = d["last_accessed_at"], d["expires_at"], d["deleted_at"]
    valid_from, valid_to = d["valid_from"], d["valid_to"]
    return (
        d["memory_id"],
        d["user_id"],
        d["namespace"],
        d["key"],
        d["memory_type"],
        text,
        dumps(content) if isinstance(content, dict) else None,
        dumps(d["metadata"]),
        dumps(d["tags"]),
        d["category"],
        d["importance"],
        d["access_count"],
        None if seen is None else ts(seen),
        None if expires is None else ts(expires),
        d["session_id"],
        d["agent_id"],
        d["version"],
        None if deleted is None else ts(deleted),
        ts(d["created_at"]),
        ts(d["updated_at"]),
        None if valid_from is None else ts(valid_from),
        None if valid_to is None else ts(valid_to),
        d["superseded_by"],
        zipped,
        None,
        content_hash(content),
    )


def memory_values(m: Memory, cipher: Cipher | None = None) -> dict[str, Any]:
    """`memory_row` by column name."""
    return dict(zip(INSERT_COLUMNS, memory_row(m, cipher), strict=True))


def snapshot_dict(m: Memory) -> dict[str, Any]:
    """A history snapshot: every field but the access counters, as `Memory.model_validate`
    reads it back (built by hand: `model_dump` cost 15 us a row)."""
    return {
        "memory_id": m.memory_id,
        "user_id": m.user_id,
        "namespace": m.namespace,
        "key": m.key,
        "memory_type": m.memory_type,
        "content": m.content,
        "metadata": m.metadata,
        "tags": m.tags,
        "category": m.category,
        "importance": m.importance,
        "expires_at": ts(m.expires_at),
        "session_id": m.session_id,
        "agent_id": m.agent_id,
        "version": m.version,
        "deleted_at": ts(m.deleted_at),
        "created_at": ts(m.created_at),
        "updated_at": ts(m.updated_at),
        "valid_from": ts(m.valid_from),
        "valid_to": ts(m.valid_to),
        "superseded_by": m.superseded_by,
    }


def snapshot(m: Memory, cipher: Cipher | None = None) -> str:
    """The JSON snapshot kept in a history row (sealed with `cipher`)."""
    return seal_snapshot(dumps(snapshot_dict(m)), m.memory_id, m.version, cipher)


_SEALED = "$sealed"


def seal_snapshot(text: str, memory_id: str, version: int, cipher: Cipher | None) -> str:
    """A snapshot's JSON text as stored: itself, or `{"$sealed": base64}` under `cipher`
    (a plain snapshot always has `memory_id`, so the two never mix up)."""
    if cipher is None:
        return text
    blob = cipher.encrypt(text.encode(), f"history/{memory_id}/{version}")
    return dumps({_SEALED: base64.b64encode(blob).decode()})


def open_snapshot(
    frozen: dict[str, Any], memory_id: str, version: int, cipher: Cipher | None
) -> dict[str, Any]:
    """A stored snapshot as written: a sealed one opened with `cipher`, a plain one as is."""
    if _SEALED not in frozen or len(frozen) != 1:
        return frozen
    if cipher is None:
        raise UnavailableError(
            f"history of memory {memory_id!r} is encrypted and no key is configured",
            {"memory_id": memory_id},
        )
    try:
        text = cipher.decrypt(base64.b64decode(frozen[_SEALED]), f"history/{memory_id}/{version}")
    except ConfigurationError as exc:
        raise UnavailableError(str(exc), {"memory_id": memory_id}) from None
    out: dict[str, Any] = json.loads(text)
    return out


def sealed_snapshot_key(text: str) -> str | None:
    """The hex key id of a sealed snapshot's text, None for a plain one."""
    if not text.startswith('{"' + _SEALED):
        return None
    frozen = json.loads(text)
    if _SEALED not in frozen or len(frozen) != 1:
        return None
    return sealed_key_id(base64.b64decode(frozen[_SEALED]))


def creation_history(m: Memory, snap: str) -> dict[str, Any]:
    """The history row of version 1 of `m`, written when that version is first replaced."""
    return {
        "memory_id": m.memory_id,
        "user_id": m.user_id,
        "version": m.version,
        "operation": "create",
        "changed_at": ts(m.created_at),
        "actor": None,
        "reason": None,
        "snapshot": snap,
    }


def creation_entry(m: Memory, live: dict[str, Any]) -> HistoryEntry:
    """The history entry of a memory never changed since its creation (no row stored yet;
    `history_id` 0 says so)."""
    return HistoryEntry.model_construct(
        history_id=0,
        memory_id=m.memory_id,
        version=m.version,
        operation="create",
        changed_at=m.created_at,
        actor=None,
        reason=None,
        snapshot=dict(live),
    )


def history_from_row(
    row: tuple[Any, ...], live: dict[str, Any] | None, cipher: Cipher | None = None
) -> HistoryEntry:
    """A history entry; `live` is the snapshot of the live row, for the one entry whose
    snapshot is not frozen yet (see `SqliteBackend._history_rows`)."""
    history_id, memory_id, version, operation, changed_at, actor, reason, snap = row
    frozen = (
        open_snapshot(json.loads(snap), memory_id, version, cipher)
        if snap is not None
        else dict(live or {})
    )
    for name in _VALIDITY_FIELDS:  # snapshots frozen before migration 0006 lack them
        frozen.setdefault(name, None)
    return HistoryEntry.model_construct(
        history_id=history_id,
        memory_id=memory_id,
        version=version,
        operation=operation,
        changed_at=datetime.fromisoformat(changed_at),
        actor=actor,
        reason=reason,
        snapshot=frozen,
    )


def parse_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)
