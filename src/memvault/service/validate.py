"""Input checking shared by every service call: pydantic errors become memvault errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from memvault import ids, limits
from memvault.errors import InvalidArgumentError, PayloadTooLargeError
from memvault.models import Filters, check_identifier

M = TypeVar("M", bound=BaseModel)


def as_error(exc: ValidationError, what: str) -> InvalidArgumentError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = [
        {
            "field": ".".join(str(p) for p in e["loc"]) or what,
            "message": e["msg"],
            "type": e["type"],
        }
        for e in errors
    ]
    message = "; ".join(
        f"{p['field']}: {p['message']}" if p["field"] != what else p["message"] for p in problems
    )
    cls = (
        PayloadTooLargeError
        if any(e["type"] == "payload_too_large" for e in errors)
        else InvalidArgumentError
    )
    return cls(f"invalid {what}: {message}", {"errors": problems})


def model(cls: type[M], data: Any, what: str) -> M:
    """Validate `data` (a model instance, a dict or keyword values) into `cls`."""
    if isinstance(data, cls):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump(exclude_unset=True)
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} must be an object, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise as_error(exc, what) from None


def from_check(exc: ValueError, field: str) -> InvalidArgumentError:
    """A failed `models.check_*` call as the matching memvault error."""
    cls = (
        PayloadTooLargeError
        if getattr(exc, "type", None) == "payload_too_large"
        else InvalidArgumentError
    )
    return cls(str(exc), {"field": field})


def user_id(value: Any) -> str:
    try:
        return check_identifier(value, "user_id", limits.MAX_USER_ID_CHARS)
    except ValueError as exc:  # PydanticCustomError is a ValueError
        raise InvalidArgumentError(str(exc), {"field": "user_id"}) from None


def identifier(value: Any, what: str, max_chars: int) -> str:
    try:
        return check_identifier(value, what, max_chars)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc), {"field": what}) from None


def memory_id(value: Any) -> str:
    if not isinstance(value, str) or not ids.is_valid_id(value, "mem"):
        raise InvalidArgumentError(
            f"memory_id must look like 'mem_' followed by 26 characters, got {str(value)[:60]!r}",
            {"field": "memory_id"},
        )
    return value


def session_id(value: Any) -> str:
    if not isinstance(value, str) or not ids.is_valid_id(value, "ses"):
        raise InvalidArgumentError(
            f"session_id must look like 'ses_' followed by 26 characters, got {str(value)[:60]!r}",
            {"field": "session_id"},
        )
    return value


_NO_FILTERS = Filters()  # frozen: one instance serves every call without filters


def filters(value: Any) -> Filters:
    """A `Filters` from a model, a mapping or None."""
    if value is None or (isinstance(value, Mapping) and not value):
        return _NO_FILTERS
    return model(Filters, dict(value) if isinstance(value, Mapping) else (value or {}), "filters")


def limit(
    value: Any, *, default: int = limits.DEFAULT_PAGE_LIMIT, maximum: int = limits.MAX_PAGE_LIMIT
) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgumentError(f"limit must be an integer in [1, {maximum}], got {value!r}")
    return value
