"""The connection interface the SQL backends' shared code is written against.

`sqlite3.Connection` satisfies `Conn` as it is; PostgreSQL connections are wrapped
(`storage/pg_connection.py`) so that the same SQL text, with `?` and `:name` parameters,
runs on both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


class Connections(Protocol):
    """Where reads and write transactions run."""

    def read(self, fn: Callable[[Any], T]) -> T: ...
    def write(self, fn: Callable[[Any], T]) -> T: ...
    def try_write(self, fn: Callable[[Any], T]) -> tuple[bool, T | None]: ...
    def close(self) -> None: ...
