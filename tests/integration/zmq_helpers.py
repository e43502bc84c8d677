"""An orchestrator on an ephemeral loopback port, served from a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from memvault import Settings
from memvault.zmq.server import Orchestrator


@dataclass
class Running:
    address: str
    orchestrator: Orchestrator


@contextmanager
def orchestrator(settings: Settings) -> Iterator[Running]:
    orch = Orchestrator(settings)
    stop, up = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            orch.serve_forever(stop, up.set)
        except BaseException as exc:  # noqa: BLE001  (surfaced to the test below)
            failure.append(exc)
            up.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    up.wait(60)
    if failure:
        orch.close()
        raise failure[0]
    assert orch.address is not None
    try:
        yield Running(orch.address, orch)
    finally:
        stop.set()
        thread.join(30)
        orch.close()
