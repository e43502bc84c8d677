"""Where blocking storage work runs.

`InlineRunner` runs it on the caller's thread: `MemVault` (the blocking library) drives the
service's coroutines to completion without an event loop, because with this runner they
never suspend - no thread hop on a 20-microsecond read. `ThreadRunner` gives the async
service (servers, `AsyncMemVault`) a pool of reader threads and one writer thread, so the
event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("memvault.storage")


class Runner(Protocol):
    async def read(self, fn: Callable[..., T], *args: Any) -> T: ...
    async def point_read(self, fn: Callable[..., T], *args: Any) -> T: ...
    async def write(self, fn: Callable[..., T], *args: Any) -> T: ...
    def background(self, fn: Callable[[], Any]) -> None: ...
    def close(self) -> None: ...


class InlineRunner:
    """Runs work at once on the calling thread; coroutines using it never suspend."""

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def point_read(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def background(self, fn: Callable[[], Any]) -> None:
        fn()

    def close(self) -> None:
        return None


class ThreadRunner:
    """Reads on a small pool, writes on one thread (the writer queue).

    Point reads (a few rows by id) run on the event loop's own thread when `inline_points`
    is on: on SQLite in WAL mode a reader never waits for the writer, the read takes about
    20 us, and the hop to a pool thread and back costs about 150 us on 2 cores (measured
    with bench/bench_store.py), so the loop is blocked for less time than the hop takes.
    """

    def __init__(self, read_threads: int, *, inline_points: bool = True) -> None:
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="memvault-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="memvault-write")
        self._inline_points = inline_points

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(fn, *args))

    async def point_read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._inline_points:
            return fn(*args)
        return await self.read(fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(fn, *args))

    def background(self, fn: Callable[[], Any]) -> None:
        """Queue `fn` on the writer thread without waiting for it (housekeeping such as
        flushing access counts, which no caller needs the result of). Errors are logged."""
        try:
            self._writer.submit(_logged, fn)
        except RuntimeError:  # shut down: closing the store writes what is pending
            return

    def close(self) -> None:
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)


def _logged(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # housekeeping: the next flush tries again
        log.warning("background storage work failed", exc_info=True)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion on this thread, with no loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a blocking memvault call suspended; it must run on the inline runner")
