"""The JSON-file backend's costs, next to SQLite's, on one machine.

    .venv/bin/python bench/bench_jsonfs.py [--users 20] [--memories 200]

Writes `--users` users with `--memories` memories and as many messages each, then measures:
opening the store (reading every file into the private index), a write (`add`), a point
read (`get`), a lexical and a hybrid search, and the bytes on disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from memvault import MemVault, Settings


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
    return f"p50 {statistics.median(samples) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"


def run(kind: str, users: int, memories: int) -> None:
    d = Path(tempfile.mkdtemp())
    url = f"jsonfs://{d / 'data'}" if kind == "jsonfs" else f"sqlite:///{d / 'x.db'}"
    s = Settings(data_dir=d, database_url=url, job_worker=False)
    with MemVault(s) as v:
        for u in range(users):
            items = [
                {"content": f"user {u} note {i}: tea, violin and a walk by the river {i % 7}"}
                for i in range(memories)
            ]
            v.add_many(f"u{u}", items)
            for i in range(0, memories, 50):
                v.add_message(f"u{u}", "user", f"message {i}")
    started = time.perf_counter()
    v = MemVault(s)
    opened = time.perf_counter() - started
    try:
        writes, reads, lex, hyb = [], [], [], []
        for i in range(100):
            t = time.perf_counter()
            m = v.add("u0", f"fresh note {i} about copper lanterns")
            writes.append(time.perf_counter() - t)
            t = time.perf_counter()
            v.get("u0", m.memory_id)
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            v.search("u1", "violin by the river", mode="lexical")
            lex.append(time.perf_counter() - t)
            t = time.perf_counter()
            v.search("u1", "violin by the river")
            hyb.append(time.perf_counter() - t)
    finally:
        v.close()
    size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    print(
        f"{kind:6s} {users} users x {memories} memories: open {opened * 1000:.0f} ms; "
        f"add {_ms(writes)}; get {_ms(reads)}; lexical {_ms(lex)}; hybrid {_ms(hyb)}; "
        f"{size / 2**20:.1f} MiB on disk"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--memories", type=int, default=200)
    args = ap.parse_args()
    for kind in ("sqlite", "jsonfs"):
        run(kind, args.users, args.memories)


if __name__ == "__main__":
    main()
