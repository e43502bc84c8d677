"""How errors look over HTTP: one mapping from `ErrorCode` to a status, one envelope.

`{"status": "error", "error": {"code", "message", "details"}, "request_id"}`, the envelope of
DESIGN.md; the same codes as every other door.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from memvault.errors import ErrorCode, MemvaultError, RateLimitedError

log = logging.getLogger("memvault.api")

STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

_HTTP_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.INVALID_ARGUMENT,
    406: ErrorCode.INVALID_ARGUMENT,
    409: ErrorCode.CONFLICT,
    411: ErrorCode.INVALID_ARGUMENT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.INVALID_ARGUMENT,
    422: ErrorCode.INVALID_ARGUMENT,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    """Every error answer."""

    status: str = "error"
    error: ErrorBody
    request_id: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": code.value} for code, status in STATUS.items()
}
ERROR_RESPONSES[422] = {"model": ErrorEnvelope, "description": "INVALID_ARGUMENT (shape)"}
"""The error answers every route may give, for the OpenAPI document."""


def request_id(request: Request) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else None


def envelope(
    code: ErrorCode,
    message: str,
    details: dict[str, Any] | None,
    rid: str | None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "status": "error",
        "error": {"code": code.value, "message": message, "details": details or {}},
        "request_id": rid,
    }
    return JSONResponse(body, status_code=status or STATUS[code], headers=headers)


def _count(request: Request, code: ErrorCode) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code.value).inc()


def memvault_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MemvaultError)
    _count(request, exc.code)
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.details.get("retry_after_s", 1))}
    if exc.code is ErrorCode.UNAVAILABLE:
        log.warning("unavailable: %s", exc.message, extra={"request_id": request_id(request)})
    return envelope(exc.code, exc.message, exc.details, request_id(request), headers=headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    _count(request, ErrorCode.INVALID_ARGUMENT)
    # The same items as a check inside the service gives (`service.validate.as_error`)
    problems = []
    for err in exc.errors()[:20]:
        where = tuple(err.get("loc", ()))
        kind, msg = str(err.get("type", "")), str(err.get("msg", ""))
        if kind == "json_invalid" and where[:1] == ("body",):
            # FastAPI puts the character where the JSON broke in the path ("body.10")
            reason = (err.get("ctx") or {}).get("error") or "cannot be parsed"
            at = f" at character {where[1]}" if len(where) > 1 else ""
            where, msg = ("body",), f"not valid JSON ({reason}{at})"
        elif kind == "missing" and where == ("body",):
            msg = "required: a JSON document"
        loc = ".".join(str(p) for p in where)
        problems.append({"field": loc, "message": msg, "type": kind})
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return envelope(
        ErrorCode.INVALID_ARGUMENT, message, {"errors": problems}, request_id(request), 422
    )


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_ARGUMENT)
    detail = exc.detail if isinstance(exc.detail, str) else code.value
    status = exc.status_code if exc.status_code in _HTTP_CODES else STATUS[code]
    return envelope(code, detail, {}, request_id(request), status, dict(exc.headers or {}))


def internal_error(request: Request, exc: Exception) -> Response:
    _count(request, ErrorCode.INTERNAL)
    log.exception("internal error", extra={"request_id": request_id(request)})
    return envelope(ErrorCode.INTERNAL, "internal error", {}, request_id(request))


def install(app: FastAPI) -> None:
    """Register the error handlers: every error leaves as the envelope."""
    app.add_exception_handler(MemvaultError, memvault_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, internal_error)
