"""Batch writes with Python's cyclic garbage collector paused (`Settings.batch_gc_pause`).

A batch of new memories allocates many short-lived containers (models, rows, tuples), and
a collection that runs while they are alive moves them to the older generations: enough
of those and Python walks every object of the process. In a process holding a model or a
large cache that walk is long: the peer benchmark's process (about 480,000 objects: PyTorch
and the data) spent 0.21-0.27 s of a 10,000-memory ingest (0.9 s) in such collections,
0.013 s with the collector paused for each `add_many`. The batch's temporaries are freed by
reference counting as usual; the collector runs again once the batch is done (and is left
alone when it was off already, by the application or a concurrent batch).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused(pause: bool = True) -> Iterator[None]:
    """The collector off for the block, when `pause` and it was on."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


__all__ = ["paused"]
