"""The orchestrator's wire format (docs/zmq.md), as pure functions: no sockets here.

A request is one frame of JSON: `{"v": 1, "action": "get_memory", "request_id": "...",
"api_key": "mvk_...", "payload": {...}}` (`v`, `request_id` and `api_key` optional). A
reply is the envelope of DESIGN.md: `{"status": "success", "data": {...}, "request_id"}` or
`{"status": "error", "error": {"code", "message", "details"}, "request_id"}`.

Large messages may be compressed: two frames, `b"zlib"` and the zlib-compressed JSON. A
client sends `"compress": true` to accept compressed replies; the server compresses a
reply above `compress_bytes` only then, so a client of seed 004's plain format never sees
one.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic_core

from memvault.errors import (
    ERRORS_BY_CODE,
    ErrorCode,
    InvalidArgumentError,
    MemvaultError,
    PayloadTooLargeError,
)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
ZLIB = b"zlib"
MAX_REQUEST_ID_CHARS = 128

Frames = list[bytes]
_KNOWN = frozenset(
    {"v", "action", "payload", "request_id", "api_key", "compress", "idempotency_key"}
)


@dataclass(slots=True)
class Request:
    action: str
    payload: dict[str, Any]
    request_id: str | None = None
    api_key: str | None = None
    version: int = PROTOCOL_VERSION
    compress: bool = False
    idempotency_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def dumps(value: Any) -> bytes:
    """JSON bytes of a value (a message, or a reply's `data` kept by the read cache)."""
    # orjson is several times faster than json on the orchestrator's small replies; the
    # standard module takes what it refuses (a lone surrogate, an integer over 64 bits).
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def _loads(body: bytes) -> Any:
    """JSON text -> value; orjson first, then the REST door's parser (pydantic-core) for
    what orjson refuses and it reads (integers over 64 bits, NaN). Both refuse a lone
    surrogate, which no store can hold (`ValueError`)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return pydantic_core.from_json(body)


def pack(body: bytes, compress_bytes: int | None) -> Frames:
    """Frames for `body`, compressed when it is over `compress_bytes` (None: never)."""
    if compress_bytes is not None and len(body) > compress_bytes:
        return [ZLIB, zlib.compress(body, 1)]
    return [body]


def unpack(frames: Frames, max_bytes: int) -> bytes:
    """The JSON bytes of a message (decompressed, at most `max_bytes`).

    Raises:
        InvalidArgumentError: not one frame, nor `zlib` + one frame, or corrupt data.
        PayloadTooLargeError: over `max_bytes`, before or after decompression.
    """
    if len(frames) == 1:
        body = frames[0]
        if len(body) > max_bytes:
            raise _too_large(len(body), max_bytes)
        return body
    if len(frames) == 2 and frames[0] == ZLIB:
        if len(frames[1]) > max_bytes:
            raise _too_large(len(frames[1]), max_bytes)
        d = zlib.decompressobj()
        try:
            body = d.decompress(frames[1], max_bytes + 1)
        except zlib.error as exc:
            raise InvalidArgumentError(f"the compressed frame is corrupt: {exc}") from None
        if len(body) > max_bytes or d.unconsumed_tail:
            raise _too_large(len(body), max_bytes)
        return body
    raise InvalidArgumentError(
        "a message is one JSON frame, or the frames 'zlib' and compressed JSON; "
        f"got {len(frames)} frames"
    )


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the message is over {limit} bytes (got at least {size})", {"limit_bytes": limit}
    )


def encode_request(
    action: str,
    payload: dict[str, Any],
    *,
    request_id: str | None = None,
    api_key: str | None = None,
    compress: bool = True,
    idempotency_key: str | None = None,
    compress_bytes: int | None = None,
) -> Frames:
    msg: dict[str, Any] = {"v": PROTOCOL_VERSION, "action": action, "payload": payload}
    if request_id is not None:
        msg["request_id"] = request_id
    if api_key is not None:
        msg["api_key"] = api_key
    if compress:
        msg["compress"] = True
    if idempotency_key is not None:
        msg["idempotency_key"] = idempotency_key
    return pack(dumps(msg), compress_bytes)


def decode_request(frames: Frames, max_bytes: int) -> Request:
    """Parse a request.

    Raises:
        InvalidArgumentError: not JSON, not an object, a missing or mistyped field, an
            unsupported protocol version.
        PayloadTooLargeError: over `max_bytes`.
    """
    body = unpack(frames, max_bytes)
    try:
        msg = _loads(body)
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgumentError("the request is not valid JSON (UTF-8)") from None
    if not isinstance(msg, dict):
        raise InvalidArgumentError("the request must be a JSON object")
    version = msg.get("v", PROTOCOL_VERSION)
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise InvalidArgumentError(
            f"protocol version {version!r} is not supported; this server speaks "
            f"{list(SUPPORTED_VERSIONS)}",
            {"supported_versions": list(SUPPORTED_VERSIONS)},
        )
    action = msg.get("action")
    if not isinstance(action, str) or not action:
        raise InvalidArgumentError("the request needs an 'action' string", {"field": "action"})
    payload = msg.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidArgumentError("'payload' must be a JSON object", {"field": "payload"})
    rid = msg.get("request_id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_REQUEST_ID_CHARS):
        raise InvalidArgumentError(
            f"'request_id' must be a string of at most {MAX_REQUEST_ID_CHARS} characters",
            {"field": "request_id"},
        )
    key = msg.get("api_key")
    if key is not None and not isinstance(key, str):
        raise InvalidArgumentError("'api_key' must be a string", {"field": "api_key"})
    idem = msg.get("idempotency_key")
    if idem is not None and (not isinstance(idem, str) or not 1 <= len(idem) <= 128):
        raise InvalidArgumentError(
            "'idempotency_key' must be a string of 1 to 128 characters",
            {"field": "idempotency_key"},
        )
    return Request(
        action=action,
        payload=payload,
        request_id=rid,
        api_key=key,
        version=int(version),
        compress=msg.get("compress") is True,
        idempotency_key=idem,
        extra={} if _KNOWN.issuperset(msg) else {k: v for k, v in msg.items() if k not in _KNOWN},
    )


def request_id_of(frames: Frames) -> str | None:
    """The request id of a message that failed to parse, when one can be read."""
    try:
        msg = _loads(unpack(frames, 1 << 30))
    except (InvalidArgumentError, UnicodeDecodeError, ValueError):
        return None
    rid = msg.get("request_id") if isinstance(msg, dict) else None
    return rid if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID_CHARS else None


def success(data: Any, request_id: str | None) -> bytes:
    return dumps({"status": "success", "data": data, "request_id": request_id})


def success_encoded(data: bytes, request_id: str | None) -> bytes:
    """`success` of data already encoded as JSON."""
    return b'{"status":"success","data":%s,"request_id":%s}' % (data, orjson.dumps(request_id))


def failure(error: MemvaultError, request_id: str | None) -> bytes:
    return dumps({"status": "error", "error": error.to_dict(), "request_id": request_id})


def decode_reply(frames: Frames, max_bytes: int) -> dict[str, Any]:
    """A reply as its envelope dict (seed 004's client returned these as they are)."""
    msg = _loads(unpack(frames, max_bytes))
    if not isinstance(msg, dict) or msg.get("status") not in ("success", "error"):
        raise InvalidArgumentError("the reply is not a memvault envelope")
    return msg


def error_of(reply: dict[str, Any]) -> MemvaultError:
    """The error a failed reply carries, as its memvault exception."""
    err = reply.get("error") or {}
    try:
        code = ErrorCode(err.get("code", "INTERNAL"))
    except ValueError:
        code = ErrorCode.INTERNAL
    cls = ERRORS_BY_CODE.get(code, MemvaultError)
    return cls(str(err.get("message", "")), dict(err.get("details") or {}))
