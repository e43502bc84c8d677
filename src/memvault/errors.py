"""The error tree every door shares.

```
MemvaultError                    INTERNAL
├── InvalidArgumentError         INVALID_ARGUMENT
│   └── PayloadTooLargeError     PAYLOAD_TOO_LARGE
├── UnauthenticatedError         UNAUTHENTICATED
├── PermissionDeniedError        PERMISSION_DENIED
├── NotFoundError                NOT_FOUND
├── ConflictError                CONFLICT
├── RateLimitedError             RATE_LIMITED
└── UnavailableError             UNAVAILABLE (safe to retry)
ConfigurationError               raised at startup, never on the wire
```

Each class pins `code`; an instance carries `message` and a `details` dict that every
door puts on the wire unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Stable error codes, the same on every door."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class MemvaultError(Exception):
    """Base of every error memvault raises on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The wire shape: `{"code", "message", "details"}`."""
        return {"code": self.code.value, "message": self.message, "details": self.details}


class InvalidArgumentError(MemvaultError):
    """Malformed or out-of-range input; nothing was changed."""

    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidArgumentError):
    """Input over a documented size or count limit (see `memvault.limits`)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnauthenticatedError(MemvaultError):
    """No credentials, or credentials that are not valid."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(MemvaultError):
    """Valid credentials that may not do this."""

    code = ErrorCode.PERMISSION_DENIED


class NotFoundError(MemvaultError):
    """No such live record for this user."""

    code = ErrorCode.NOT_FOUND


class ConflictError(MemvaultError):
    """Unique (user, namespace, key) taken, or a version mismatch."""

    code = ErrorCode.CONFLICT


class RateLimitedError(MemvaultError):
    """Over a configured rate."""

    code = ErrorCode.RATE_LIMITED


class UnavailableError(MemvaultError):
    """Storage unreachable or busy past the configured wait; safe to retry."""

    code = ErrorCode.UNAVAILABLE


class ConfigurationError(Exception):
    """A setting is wrong; raised at start-up, never sent over a wire."""


ERRORS_BY_CODE: dict[ErrorCode, type[MemvaultError]] = {
    cls.code: cls
    for cls in (
        MemvaultError,
        InvalidArgumentError,
        PayloadTooLargeError,
        UnauthenticatedError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitedError,
        UnavailableError,
    )
}
