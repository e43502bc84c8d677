"""How long after a write returns another server's cache learns of it (PostgreSQL).

    .venv/bin/python bench/bench_notify.py --url postgresql://postgres@127.0.0.1:5432/test

A memory is updated through one vault (its own pool); a second change listener, on its own
connection as another server's would be, waits for the notice. Reported: the time from the
update returning to the notice being there, p50/p95/max over `-n` updates, in ms; that is the
window in which another server's read cache could still answer the old version.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from memvault import MemVault, Settings
from memvault.storage.postgres import ChangeListener


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("-n", type=int, default=500)
    args = ap.parse_args()
    listener = ChangeListener(args.url)
    listener.start()
    gaps = []
    with MemVault(Settings(database_url=args.url, embedder="none")) as vault:
        m = vault.add("notify-bench", "version 0")
        listener.drain()
        for i in range(args.n):
            vault.update("notify-bench", m.memory_id, content=f"version {i + 1}")
            done = time.perf_counter()
            while True:
                memories, _, _ = listener.drain()
                if any(mid == m.memory_id for _, mid in memories):
                    break
                time.sleep(0.00005)
            gaps.append((time.perf_counter() - done) * 1000)
        vault.erase_user("notify-bench")
    listener.close()
    gaps.sort()
    print(
        json.dumps(
            {
                "updates": len(gaps),
                "notice_after_write_p50_ms": round(statistics.median(gaps), 3),
                "p95_ms": round(gaps[int(0.95 * len(gaps))], 3),
                "max_ms": round(gaps[-1], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
