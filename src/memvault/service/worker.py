"""The background job worker: runs `run_jobs` until stopped, woken early when this process
queues a job, otherwise polling every `job_poll_s` (a read that finds nothing writes
nothing). Several workers (processes, servers) share the queue safely: jobs are leased.

`AsyncWorker` runs as a task on the event loop of the async service (`memvault serve`);
`ThreadWorker` runs on a thread of its own for the blocking library and the orchestrator,
whose service never suspends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from memvault.models import JobReport

log = logging.getLogger("memvault.worker")
ERROR_PAUSE_S = 5.0  # after an unexpected error (the store unreachable), before the next try


class AsyncWorker:
    def __init__(self, run_jobs: Callable[[], Awaitable[JobReport]], poll_s: float) -> None:
        self._run_jobs = run_jobs
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the job in hand (its lease would let another worker finish it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            pause = self._poll_s
            try:
                if (await self._run_jobs()).claimed:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the job worker failed; trying again in %.0f s", ERROR_PAUSE_S)
                pause = ERROR_PAUSE_S
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)


class ThreadWorker:
    def __init__(self, run_jobs: Callable[[], Any], poll_s: float, name: str) -> None:
        self._run_jobs = run_jobs  # blocking: returns a JobReport
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the job in hand; waits for it up to `timeout_s`."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pause = self._poll_s
            try:
                report: JobReport = self._run_jobs()
                if report.claimed:
                    continue
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("the job worker failed; trying again in %.0f s", ERROR_PAUSE_S)
                pause = ERROR_PAUSE_S
            self._wake.wait(pause)
            self._wake.clear()
