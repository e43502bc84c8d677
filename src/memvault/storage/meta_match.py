"""Metadata filters in Python, with the meaning the SQL filters have (`queries.visibility`):
SQLite's `json_extract(metadata, key) <op> value`, which PostgreSQL copies.

Used where metadata is not readable by SQL: a store that seals memory content and metadata
(docs/backends.md#encryption) filters its listings after opening each row.

- A key that is missing or JSON null is NULL: `None` matches it, every comparison but `ne`
  fails on it, and `ne` holds for it.
- true/false are 1/0; an object or an array compares as its compact JSON text.
- Across types numbers order below text; text compares by code point (UTF-8 byte order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _value(v: Any) -> Any:
    if v is None or isinstance(v, int | float | str):
        return int(v) if isinstance(v, bool) else v
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _order(v: Any) -> tuple[int, Any]:
    return (1, v) if isinstance(v, str) else (0, v)


def _compare(have: Any, op: str, bound: Any) -> bool:
    if op == "ne":
        return have is None or _order(have) != _order(_value(bound))
    if have is None:
        return False
    a, b = _order(have), _order(_value(bound))
    if op == "eq":
        return a == b
    if op == "gt":
        return a > b
    if op == "gte":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b  # lte


def metadata_matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True when `metadata` passes every filter of `wanted` (a `Filters.metadata`)."""
    for key, want in wanted.items():
        have = _value(metadata.get(key))
        if want is None:
            if have is not None:
                return False
        elif isinstance(want, dict):
            if not all(_compare(have, op, bound) for op, bound in want.items()):
                return False
        elif not _compare(have, "eq", want):
            return False
    return True
