"""PostgreSQL connections: a psycopg 3 pool, serializable write transactions, and the same
SQL text the SQLite backend runs.

Why this shape: the SQL backends share their statements (`storage/sql/backend.py`), written
with SQLite's `?` and `:name` parameters and read back as SQLite hands values over (times as
fixed-width ISO text, JSON as text, vectors as float32 bytes). `PgConn` rewrites the
parameters to psycopg's once per statement text, and the loaders registered on every pooled
connection return the same Python values, so one body of code runs on both engines.

Writes run at SERIALIZABLE isolation and are retried as a whole on a serialization failure
or a deadlock, until `busy_timeout_s` has passed (then `UnavailableError`, safe to retry):
the read-then-write steps of the shared code (a version check, an upsert, a streak) keep
SQLite's all-or-nothing meaning with several servers writing at once. A lost connection or a
server that is down answers `UnavailableError`; the pool reconnects by itself.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any, TypeVar

import numpy as np
import psycopg
import psycopg.errors
import psycopg_pool
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.string import TextLoader

from memvault.errors import ConflictError, InvalidArgumentError, MemvaultError, UnavailableError

T = TypeVar("T")

_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_PARAM_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|%|\?|(?<![:\w]):(\w+)")
_translated: dict[str, str] = {}


def pg_sql(sql: str) -> str:
    """SQLite-style parameters (`?`, `:name`) as psycopg's (`%s`, `%(name)s`); a literal `%`
    doubled. Quoted strings and identifiers are left alone."""
    got = _translated.get(sql)
    if got is None:

        def swap(m: re.Match[str]) -> str:
            tok = m.group(0)
            if tok == "?":
                return "%s"
            if tok == "%":
                return "%%"
            if m.group(1) is not None:
                return f"%({m.group(1)})s"
            return tok.replace("%", "%%")  # a quoted string: psycopg still reads % there

        got = _PARAM_RE.sub(swap, sql)
        if len(_translated) < 4096:
            _translated[sql] = got
    return got


def conninfo(url: str) -> str:
    """`postgresql://`, `postgresql+psycopg://`, `postgresql+asyncpg://` (seed 001) and
    `postgres://` URLs as a libpq connection string."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (expected postgresql://...)")
    return f"postgresql://{rest}"


class PackedVector(bytes):
    """A float32 little-endian vector (memvault's stored form) bound as a pgvector `vector`."""


class _TextTimestamptz(TimestamptzLoader):
    """timestamptz as SQLite stores it: `2026-01-01T00:00:00.000000+00:00`."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        if text.endswith("+00") and len(text) >= 22 and text[10] == " ":
            head = text[:19]
            frac = text[20:-3] if len(text) > 22 else ""
            return f"{head[:10]}T{head[11:]}.{frac.ljust(6, '0')}+00:00"
        value = super().load(data)  # another time zone or form: let psycopg parse it
        return value.astimezone(UTC).isoformat(timespec="microseconds")


class _VectorLoader(Loader):
    """pgvector's text form `[0.1,0.2]` as float32 bytes (pgvector prints the shortest
    text that reads back to the same float32, so the round trip is exact)."""

    def load(self, data: Buffer) -> bytes:
        text = bytes(data)
        return np.array(text[1:-1].split(b","), dtype="<f4").tobytes()


class _VectorDumper(Dumper):
    """float32 bytes in pgvector's binary input form: dimension, unused, big-endian floats."""

    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer:
        values = np.frombuffer(obj, dtype="<f4")
        return np.array([len(values), 0], dtype=">u2").tobytes() + values.astype(">f4").tobytes()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Run on every new pooled connection: UTC, and memvault's value forms."""
    conn.execute("SET TIME ZONE 'UTC'")
    # Rows per user range from a handful to hundreds of thousands: a statement prepared once
    # (psycopg prepares after 5 runs) must still be planned for the user it runs for. A
    # generic plan took 2.2 s where the custom one takes 0.14 s (bench_search.py, 200k user).
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.adapters.register_loader("timestamptz", _TextTimestamptz)
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    info = TypeInfo.fetch(conn, "vector")
    if info is not None:
        conn.adapters.register_loader(info.oid, _VectorLoader)
        dumper = type("VectorDumper", (_VectorDumper,), {"oid": info.oid})
        conn.adapters.register_dumper(PackedVector, dumper)


class PgConn:
    """A psycopg connection that takes SQLite-style statements (`dbapi.Conn`)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = None, /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.execute(pg_sql(sql), () if parameters is None else parameters)
        return cur

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(pg_sql(sql), list(parameters))
        return cur


def translate(exc: Exception) -> Exception:
    """A driver error as a memvault error (the caller chains it with `from`)."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return ConflictError("a live memory with this namespace and key already exists")
    if isinstance(exc, psycopg.errors.UndefinedFile | psycopg.errors.FeatureNotSupported):
        return UnavailableError(f"PostgreSQL cannot run memvault: {exc}")
    if isinstance(
        exc, psycopg.errors.UntranslatableCharacter | psycopg.errors.CharacterNotInRepertoire
    ):
        return InvalidArgumentError(f"PostgreSQL cannot store this text: {exc}")
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return UnavailableError("no PostgreSQL connection became free in time; retry")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return UnavailableError(f"PostgreSQL is unreachable: {exc}")
    if isinstance(exc, psycopg.errors.IntegrityError):
        return MemvaultError(f"the change broke a storage constraint: {exc}")
    return MemvaultError(f"PostgreSQL rejected a statement: {exc}")


class PostgresConnections:
    """The pool, the read path and the serializable write-transaction loop."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        max_overflow: int,
        pool_timeout_s: float,
        pre_ping: bool,
        busy_timeout_s: float,
    ) -> None:
        self.url = url
        self.busy_timeout_s = busy_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self.write_lock = threading.Lock()  # one access flush at a time per process
        self._closed = False
        self.pool = psycopg_pool.ConnectionPool(
            conninfo(url),
            min_size=min(pool_size, 2),
            max_size=pool_size + max_overflow,
            kwargs={"autocommit": True, "prepare_threshold": 5},
            configure=_configure,
            check=psycopg_pool.ConnectionPool.check_connection if pre_ping else None,
            timeout=pool_timeout_s,
            open=False,
            name="memvault",
        )
        self.pool.open(wait=False)

    def _connection(self) -> Any:
        if self._closed:
            raise UnavailableError("the memvault store is closed")
        return self.pool.connection(timeout=self.pool_timeout_s)

    def read(self, fn: Callable[[PgConn], T]) -> T:
        try:
            with self._connection() as raw:
                return fn(PgConn(raw))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise translate(exc) from exc

    def write(self, fn: Callable[[PgConn], T]) -> T:
        """Run `fn` in one serializable transaction; retried as a whole on a serialization
        failure or deadlock until `busy_timeout_s` has passed."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.002
        while True:
            try:
                with self._connection() as raw, raw.transaction():
                    raw.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    return fn(PgConn(raw))
            except _RETRYABLE as exc:
                if time.monotonic() >= deadline:
                    raise UnavailableError(
                        "the change kept conflicting with concurrent writers; retry"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise translate(exc) from exc

    def try_write(self, fn: Callable[[PgConn], T]) -> tuple[bool, T | None]:
        """Like `write`, but only when no other thread of this process is in `try_write`."""
        if not self.write_lock.acquire(blocking=False):
            return False, None
        try:
            return True, self.write(fn)
        finally:
            self.write_lock.release()

    def close(self) -> None:
        self._closed = True
        self.pool.close()


__all__ = ["PackedVector", "PgConn", "PostgresConnections", "conninfo", "pg_sql", "translate"]
