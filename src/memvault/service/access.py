"""Who may call: API keys (stored hashed), the audit log, and erasing a user.

A key's secret is `mvk_` + 43 characters of URL-safe base64 (32 random bytes). Only its
SHA-256 is stored: the secret has 256 bits of entropy, so a slow salted hash would add
nothing but latency, and the plain hash lets a request find its key by index. Lookups are
cached for `auth_cache_s` seconds; a key revoked through this process stops at once, and
through another process within that time.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import math
import mmap
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from memvault import ids, limits
from memvault.clock import Clock
from memvault.config import Settings
from memvault.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
)
from memvault.models import ApiKey, AuditEntry
from memvault.service import validate
from memvault.storage.base import Backend

KEY_PREFIX = "mvk_"
_SECRET_CHARS = len(KEY_PREFIX) + 43
_CACHE_SIZE = 10_000


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return KEY_PREFIX + raw


ME = "me"
"""Stands for the calling key's own user wherever a user is named."""


def secret_from_headers(headers: Mapping[str, str]) -> str:
    """The API key of HTTP request headers (lower-case names): `Authorization: Bearer <key>`
    or `X-API-Key: <key>`, the same on every HTTP door.

    Raises:
        UnauthenticatedError: no key, or an `Authorization` header of another scheme.
    """
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthenticatedError("Authorization must be 'Bearer <API key>'")
        return value.strip()
    secret = headers.get("x-api-key")
    if not secret:
        raise UnauthenticatedError(
            "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    return secret


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, the same on every door: a user key acts for its user only, an
    admin key (or none, when auth is disabled) for any user it names."""

    key: ApiKey | None

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.user_id is None

    @property
    def actor(self) -> str:
        return "anonymous" if self.key is None else self.key.key_id

    def user(self, named: str | None, *, default: str | None = None) -> str:
        """The user a request acts for: the key's own, or (admin) the one it names, else
        `default`.

        Raises:
            PermissionDeniedError: a user key naming another user.
            InvalidArgumentError: an admin key naming no user, with no default.
        """
        own = None if self.key is None else self.key.user_id
        if own is not None:
            if named is not None and named not in (own, ME):
                raise PermissionDeniedError(
                    "this API key may act only for its own user", {"user_id": named}
                )
            return own
        if named is None or named == ME:
            if default is not None:
                return default
            raise InvalidArgumentError(
                "an admin key must name the user (user_id)", {"field": "user_id"}
            )
        return named

    def require_admin(self) -> None:
        if not self.admin:
            raise PermissionDeniedError("this call needs an admin API key")


RATE_FILE_ENV = "MEMVAULT_RATE_FILE"  # set by `memvault serve --workers N` for its workers


def _refill(tokens: float, then: float, rate: float, now: float) -> float:
    """What a bucket of `rate` requests a minute that held `tokens` at `then` holds `now`."""
    return float(min(rate, tokens + max(0.0, now - then) * rate / 60.0))


def _spend(tokens: float, rate: float) -> tuple[float, float]:
    """One request from a bucket holding `tokens`: what is left, and 0.0 when admitted,
    else the seconds until one token is there (nothing is spent then)."""
    if tokens < 1.0:
        return tokens, (1.0 - tokens) * 60.0 / rate
    return tokens - 1.0, 0.0


class SharedBuckets:
    """Token buckets in a file that several processes map: the workers of one
    `memvault serve --workers N` spend one budget per key, not one each.

    A table of `SLOTS` slots (key digest, tokens, time, rate), found by the key's digest and
    up to `PROBE` slots further; a slot whose bucket has refilled completely is as good as
    empty and is taken over. Each change holds an `fcntl` lock on the file (a few
    microseconds); times are `time.monotonic()`, one clock for every process of the machine.
    """

    SLOTS = 8192
    PROBE = 16
    _SLOT = struct.Struct("<16sddd")  # key digest, tokens, monotonic time, rate per minute

    def __init__(self, path: Path) -> None:
        self.path = path
        size = self.SLOTS * self._SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()  # fcntl locks are per process: threads take turns here

    def take(self, key_id: str, rate: int, now: float) -> float | None:
        """Spend one request of `key_id`'s budget: 0.0 when admitted, else the seconds until
        one is available; None when every slot it may use holds another key's unfinished
        bucket (the caller counts this key in its own process meanwhile)."""
        digest = hashlib.blake2b(key_id.encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:4], "little")
        slot = self._SLOT
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                reuse = None
                for i in range(self.PROBE):
                    at = ((start + i) % self.SLOTS) * slot.size
                    held, tokens, then, held_rate = slot.unpack_from(self._map, at)
                    if held == digest:
                        tokens = _refill(tokens, then, rate, now)
                        break
                    if reuse is None and (
                        held_rate <= 0 or _refill(tokens, then, held_rate, now) >= held_rate
                    ):
                        reuse = at
                else:
                    if reuse is None:
                        return None
                    at, tokens = reuse, float(rate)
                left, wait = _spend(tokens, rate)
                slot.pack_into(self._map, at, digest, left, now, float(rate))
                return wait
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class RateLimiter:
    """A token bucket per key: `rate` requests per minute, bursts up to `rate`.

    In this process, or in `shared` buckets when several processes serve one store
    (`memvault serve --workers N` hands its workers one file in `RATE_FILE_ENV`)."""

    def __init__(self, shared: SharedBuckets | None = None) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self.shared = shared

    @classmethod
    def for_server(cls) -> RateLimiter:
        """Shared buckets when `memvault serve` runs several workers, else this process's."""
        path = os.environ.get(RATE_FILE_ENV)
        return cls(SharedBuckets(Path(path)) if path else None)

    def take(self, key_id: str, rate: int) -> None:
        """Spend one request of `key_id`'s budget, or raise `RateLimitedError`."""
        now = time.monotonic()
        wait: float | None = None
        if self.shared is not None:
            wait = self.shared.take(key_id, rate, now)
        if wait is None:
            with self._lock:
                tokens, at = self._buckets.get(key_id, (float(rate), now))
                left, wait = _spend(_refill(tokens, at, rate, now), rate)
                self._buckets[key_id] = (left, now)
        if wait > 0.0:
            seconds = math.ceil(wait)
            raise RateLimitedError(
                f"over {rate} requests per minute for this key; retry in {seconds} s",
                {"retry_after_s": seconds, "rate_per_minute": rate},
            )

    def admit(self, key: ApiKey, default_rate: int) -> None:
        """Count one request of `key` against its own rate limit, else `default_rate`
        (the `rate_per_minute` setting; 0: none), every door alike."""
        rate = key.rate_per_minute or default_rate
        if rate:
            self.take(key.key_id, rate)


class AccessOps:
    """API keys and audit calls of the service. Concrete class: `AsyncMemVault`."""

    backend: Backend
    settings: Settings
    clock: Clock
    _key_cache: OrderedDict[str, tuple[float, ApiKey | None]]

    async def create_api_key(
        self,
        user_id: str | None = None,
        *,
        admin: bool = False,
        name: str | None = None,
        rate_per_minute: int | None = None,
        actor: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key bound to `user_id`, or an admin key (`admin=True`, no user).

        Returns the stored key and its secret; the secret is shown this once and never again.

        Raises:
            InvalidArgumentError: neither or both of `user_id` and `admin`; a bad rate.
        """
        if admin == (user_id is not None):
            raise InvalidArgumentError("give either a user_id or admin=True, not both or neither")
        uid = None if user_id is None else validate.user_id(user_id)
        label = None if name is None else validate.identifier(name, "name", 256)
        if rate_per_minute is not None and (
            isinstance(rate_per_minute, bool)
            or not isinstance(rate_per_minute, int)
            or not 1 <= rate_per_minute <= limits.MAX_RATE_PER_MINUTE
        ):
            raise InvalidArgumentError(
                f"rate_per_minute must be in [1, {limits.MAX_RATE_PER_MINUTE}], "
                f"got {rate_per_minute!r}",
                {"field": "rate_per_minute"},
            )
        secret = new_secret()
        key = ApiKey.model_construct(
            key_id=ids.new_id("key"),
            prefix=secret[:12],
            user_id=uid,
            name=label,
            rate_per_minute=rate_per_minute,
            created_at=self.clock.now(),
            revoked_at=None,
        )
        stored = await self.backend.insert_key(key, hash_secret(secret), actor)
        return stored, secret

    async def list_api_keys(
        self, user_id: str | None = None, *, include_revoked: bool = False
    ) -> list[ApiKey]:
        """Keys of `user_id` (all keys when None), oldest first; secrets are never listed."""
        uid = None if user_id is None else validate.user_id(user_id)
        return await self.backend.list_keys(uid, include_revoked=include_revoked)

    async def revoke_api_key(self, key_id: str, *, actor: str | None = None) -> ApiKey:
        """Revoke a key; it stops working at once in this process.

        Raises:
            NotFoundError: no such key.
        """
        kid = validate.identifier(key_id, "key_id", 40)
        key = await self.backend.revoke_key(kid, self.clock.now(), actor)
        if key is None:
            raise NotFoundError(f"no API key {kid!r}", {"key_id": kid})
        self._cache().clear()
        return key

    def known_key(self, secret: str) -> ApiKey | None:
        """The live key of `secret` when this process checked it lately (within
        `auth_cache_s`), without asking storage; None otherwise (`authenticate` decides)."""
        hit = self._cache().get(secret)
        if hit is None or hit[0] <= time.monotonic():
            return None
        key = hit[1]
        return None if key is None or key.revoked_at is not None else key

    async def authenticate(self, secret: str) -> ApiKey:
        """The live key whose secret this is.

        Raises:
            UnauthenticatedError: unknown, malformed or revoked key.
        """
        if (
            not isinstance(secret, str)
            or len(secret) != _SECRET_CHARS
            or not secret.startswith(KEY_PREFIX)
        ):
            raise UnauthenticatedError("the API key is malformed")
        cache = self._cache()
        now = time.monotonic()
        hit = cache.get(secret)
        if hit is not None and hit[0] > now:
            key = hit[1]
        else:
            key = await self.backend.key_by_hash(hash_secret(secret))
            cache[secret] = (now + self.settings.auth_cache_s, key)
            cache.move_to_end(secret)
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        if key is None or key.revoked_at is not None:
            raise UnauthenticatedError("the API key is unknown or revoked")
        return key

    async def audit_log(
        self, user_id: str | None = None, *, after: int | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        """Audited actions (of `user_id`, or all), oldest first; page with `after`."""
        uid = None if user_id is None else validate.user_id(user_id)
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63
        ):
            raise InvalidArgumentError(
                f"after must be an audit_id (a non-negative integer), got {after!r}",
                {"field": "after"},
            )
        return await self.backend.audit_log(uid, after, validate.limit(limit))

    async def erase_user(self, user_id: str, *, actor: str | None = None) -> dict[str, int]:
        """Hard-delete everything a user owns (memories, history, messages, sessions, summary,
        metrics, API keys), leaving an audit row. Returns how many rows of each kind went.

        Raises:
            NotFoundError: no such user.
        """
        uid = validate.user_id(user_id)
        counts = await self.backend.erase_user(uid, self.clock.now(), actor)
        self._cache().clear()
        return counts

    async def record_audit(
        self,
        action: str,
        *,
        user_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Add an audit row (for actions a front door performs, such as a purge)."""
        await self.backend.add_audit(
            at or self.clock.now(),
            actor,
            validate.identifier(action, "action", 64),
            user_id,
            dict(details or {}),
        )

    def _cache(self) -> OrderedDict[str, tuple[float, ApiKey | None]]:
        try:
            return self._key_cache
        except AttributeError:
            self._key_cache = OrderedDict()
            return self._key_cache
