"""An orchestrator on an ephemeral loopback port, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from memvault import AsyncMemVault, Settings
from memvault.zmq.server import Orchestrator


@dataclass
class Running:
    address: str
    orchestrator: Orchestrator


@contextmanager
def orchestrator(settings: Settings) -> Iterator[Running]:
    s = settings.model_copy(update={"zmq_address": settings.zmq_address})
    started = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        async def main() -> None:
            vault = await AsyncMemVault.open(s)
            orch = Orchestrator(vault, s)
            stop = asyncio.Event()
            ready = asyncio.Event()
            box.update(orch=orch, stop=stop, loop=asyncio.get_running_loop())
            task = asyncio.ensure_future(orch.run(stop, ready=ready))
            await asyncio.wait(
                {task, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            started.set()
            try:
                await task
            finally:
                await vault.close()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001  (surfaced to the test below)
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(60)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    orch = box["orch"]
    assert isinstance(orch, Orchestrator)
    assert orch.address is not None
    try:
        yield Running(orch.address, orch)
    finally:
        loop = box["loop"]
        stop = box["stop"]
        loop.call_soon_threadsafe(stop.set)  # type: ignore[attr-defined]
        thread.join(30)
