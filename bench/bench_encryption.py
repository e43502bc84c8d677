"""What encrypting memory content and metadata costs on SQLite (docs/backends.md#encryption).

    .venv/bin/python bench/bench_encryption.py [--memories 5000]

One user with `--memories` memories (written in batches of 500, without an embedder, so the
figures are the store's own), on a plain store and on a sealed one: batch insert rate, a
single add, a point read, a page of 100, a page of 100 filtered by metadata (SQL on the
plain store, opened and matched in Python on the sealed one), then a key rotation's rate.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from memvault import MemVault, Settings
from memvault.crypto import new_key
from memvault.service import admin


def _p50(fn: Callable[[], object], n: int = 200) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def run(sealed: bool, memories: int) -> None:
    d = Path(tempfile.mkdtemp())
    key = new_key()
    extra = {"encryption_key": key, "encrypt_content": True} if sealed else {}
    s = Settings(
        data_dir=d,
        database_url=f"sqlite:///{d / 'x.db'}",
        embedder="none",
        job_worker=False,
        **extra,
    )
    with MemVault(s) as v:
        t = time.perf_counter()
        for start in range(0, memories, 500):
            v.add_many(
                "u",
                [
                    {
                        "content": f"note {i}: tea, violin and a walk by the river {i % 7}",
                        "metadata": {"n": i, "kind": f"k{i % 10}"},
                    }
                    for i in range(start, min(memories, start + 500))
                ],
            )
        rate = memories / (time.perf_counter() - t)
        counter = iter(range(10**9))
        add = _p50(lambda: v.add("u", f"fresh note {next(counter)} about lanterns"))
        some = v.list_memories("u", limit=1).items[0].memory_id
        get = _p50(lambda: v.get("u", some))
        page = _p50(lambda: v.list_memories("u", limit=100), 50)
        filtered = _p50(
            lambda: v.list_memories("u", limit=100, filters={"metadata": {"kind": "k3"}}), 20
        )
    print(
        f"{'sealed' if sealed else 'plain '}: insert {rate:,.0f} memories/s, add p50 {add:.2f} ms, "
        f"get p50 {get:.3f} ms, page of 100 p50 {page:.2f} ms, "
        f"page of 100 by metadata p50 {filtered:.2f} ms"
    )
    if sealed:
        t = time.perf_counter()
        done = admin.rotate_encryption_key(s, new_key())
        took = time.perf_counter() - t
        print(f"        rotation: {done['memories'] / took:,.0f} memories/s ({done})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--memories", type=int, default=5000)
    args = ap.parse_args()
    run(False, args.memories)
    run(True, args.memories)


if __name__ == "__main__":
    main()
