"""Vector searches of many small users in one process: how the first searches of each user
(its vectors read from the file) and the later ones (its matrix kept) cost.

    .venv/bin/python bench/bench_first_search.py                     # 1,000 users x 100
    .venv/bin/python bench/bench_first_search.py --store /tmp/fs     # keep the store, reuse it

The peer benchmark's 100k search (../shared/bench/peers) is this workload: random users,
each searched about once, `mode="vector"` with the query vector given. Memories carry
random unit vectors (the model is not loaded). Prints p50 / p95 per block of `--block`
searches, then over all: the first blocks pay the process's first touches of the file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from memvault import MemVault, Settings

DIM = 384


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.standard_normal((*shape, DIM)).astype(np.float32)
    norms: np.ndarray = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / norms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--searches", type=int, default=4000)
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--store", help="directory of the store (made on the first run)")
    args = ap.parse_args()
    root = Path(args.store or tempfile.mkdtemp(prefix="memvault-first-"))
    root.mkdir(parents=True, exist_ok=True)
    fresh = not (root / "memvault.db").exists()
    settings = Settings(data_dir=str(root), database_url=f"sqlite:///{root}/memvault.db")
    rng = np.random.default_rng(1)
    with MemVault(settings) as vault:
        if fresh:
            for u in range(args.users):
                vecs = _unit(rng, (args.per_user,))
                items = [
                    {"content": f"memory {i} of user {u}", "embedding": vecs[i]}
                    for i in range(args.per_user)
                ]
                vault.add_many(f"u{u}", items)
    # A new process's view: the store is opened again, nothing kept yet.
    users = rng.integers(args.users, size=args.searches)
    queries = _unit(rng, (args.searches,))
    took = np.empty(args.searches)
    with MemVault(settings) as vault:
        for i, (u, q) in enumerate(zip(users, queries, strict=True)):
            t = time.perf_counter()
            vault.search(f"u{u}", "what", k=10, mode="vector", query_vector=q)
            took[i] = time.perf_counter() - t
    ms = took * 1e3
    blocks = [
        [round(float(np.percentile(ms[a : a + args.block], p)), 3) for p in (50, 95)]
        for a in range(0, len(ms), args.block)
    ]
    print(
        json.dumps(
            {
                "memories": args.users * args.per_user,
                "searches": args.searches,
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p95_ms": round(float(np.percentile(ms, 95)), 3),
                "per_block_p50_p95_ms": blocks,
            }
        )
    )


if __name__ == "__main__":
    main()
