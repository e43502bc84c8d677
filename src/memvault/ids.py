"""Prefixed, time-sortable ids: `mem_01JD3...` (prefix + 26 Crockford base32 characters).

The 26 characters are 48 bits of milliseconds since the epoch and 80 random bits, the
layout of a ULID, so ids sort by creation time within a millisecond's resolution.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIXES = frozenset({"mem", "ses", "msg", "usr", "key", "job", "req"})
_ID_RE = re.compile(r"^(?P<prefix>[a-z]{2,5})_[0-9A-HJKMNP-TV-Z]{26}$")

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_last_head: tuple[int, str] = (-1, "")
_last_mid: tuple[int, str] = (-1, "")  # the random part's first 40 bits, encoded
_LOW = (1 << 40) - 1


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> two characters


def _encode(value: int, length: int) -> str:
    """`value` as `length` (even) Crockford base32 characters, most significant first."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(5 * length - 10, -1, -10))


def new_id(prefix: str) -> str:
    """Return a new id such as `mem_01JD3Q...`; ids made in one process strictly increase."""
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` new ids, increasing, for one clock read and one lock (a batch of memories:
    `add_many`); the same ids `count` calls of `new_id` would give in one millisecond."""
    global _last_ms, _last_rand, _last_head, _last_mid
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}; allowed: {sorted(PREFIXES)}")
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or a clock step back): keep order by incrementing the random part.
            ms = _last_ms
            first = _last_rand + 1
        else:
            first = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to increment
        _last_ms, _last_rand = ms, first + count - 1
    # 26 characters = 130 bits: the first 10 hold the 48-bit time, the last 16 the 80
    # random bits. Ids made in one millisecond share the time part and count up from one
    # random value, so they share the first half of the random part too: each half is
    # encoded once, and an id costs four character pairs.
    head = _last_head
    if head[0] != ms:
        head = _last_head = (ms, _encode(ms, 10))
    pairs = _PAIRS
    out = []
    for rand in range(first, first + count):
        high, low = rand >> 40, rand & _LOW
        mid = _last_mid
        if mid[0] != high:
            mid = _last_mid = (high, _encode(high, 8))
        out.append(
            f"{prefix}_{head[1]}{mid[1]}{pairs[low >> 30]}{pairs[(low >> 20) & 1023]}"
            f"{pairs[(low >> 10) & 1023]}{pairs[low & 1023]}"
        )
    return out


def derived_id(prefix: str, at_ms: int, source: str) -> str:
    """A stable id for a record imported from elsewhere: the time part from `at_ms`, the
    80 random bits from a hash of `source` (the same source always gives the same id, so
    importing it again finds it)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}; allowed: {sorted(PREFIXES)}")
    digest = int.from_bytes(hashlib.sha256(source.encode()).digest()[:10], "big")
    ms = min(max(at_ms, 0), (1 << 48) - 1)
    return f"{prefix}_{_encode(ms, 10)}{_encode(digest, 16)}"


def is_valid_id(value: str, prefix: str) -> bool:
    """True when `value` is a well-formed id with this prefix."""
    match = _ID_RE.match(value)
    return bool(match) and match is not None and match.group("prefix") == prefix
