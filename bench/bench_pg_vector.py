"""Exact vector search and fact ingest on PostgreSQL, in a new store whose tables have not
been analysed yet, then after ANALYZE.

    .venv/bin/python bench/bench_pg_vector.py --url postgresql://postgres@127.0.0.1:5432/test

Makes a database of its own beside the one `--url` names (dropped at the end), writes
`--users` users of `--per-user` memories with caller-given random unit vectors (under
`pg_hnsw_from`, so every search is exact), then times `MemVault.search(mode="vector")`
with a query vector given (no model) and the ingest of `--facts` facts a user in batches
of 100 (dedup on write asks for each fact's nearest stored memory). Both run first right
after the writes, when PostgreSQL's statistics may still say the tables are tiny, and
again after `ANALYZE`. Prints one JSON object (milliseconds; ingest in us a fact).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import psycopg

from memvault import MemVault, Settings

DIM = 384


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    norms: np.ndarray = np.linalg.norm(v, axis=1, keepdims=True)
    return v / norms


def _measure(
    vault: MemVault, rng: np.random.Generator, users: int, searches: int, facts: int, tag: str
) -> dict[str, Any]:
    took = []
    for _ in range(searches):
        u = int(rng.integers(users))
        q = _unit(rng, 1)[0]
        t = time.perf_counter()
        vault.search(f"u{u}", "what", k=10, mode="vector", query_vector=q)
        took.append((time.perf_counter() - t) * 1e3)
    took.sort()
    out: dict[str, Any] = {
        "search_p50_ms": round(statistics.median(took), 2),
        "search_p95_ms": round(took[int(0.95 * (len(took) - 1))], 2),
    }
    if facts:
        n = 0
        t = time.perf_counter()
        for u in range(users):
            vecs = _unit(rng, facts)
            for start in range(0, facts, 100):
                items = [
                    {
                        "content": f"fact {tag} {i} of user {u}",
                        "memory_type": "fact",
                        "embedding": vecs[i],
                    }
                    for i in range(start, min(facts, start + 100))
                ]
                n += len(vault.add_many(f"u{u}", items))
        out["fact_ingest_us"] = round((time.perf_counter() - t) / n * 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="a PostgreSQL database to connect through")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--per-user", type=int, default=2000)
    ap.add_argument("--searches", type=int, default=100)
    ap.add_argument("--facts", type=int, default=100, help="facts a user, each pass")
    args = ap.parse_args()
    name = f"memvault_bench_pgvec_{int(time.time())}"
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = args.url.rsplit("/", 1)[0] + "/" + name
    rng = np.random.default_rng(5)
    result: dict[str, Any] = {"users": args.users, "per_user": args.per_user}
    try:
        settings = Settings(data_dir=tempfile.mkdtemp(prefix="mv-pgvec-"), database_url=url)
        with MemVault(settings) as vault:
            for u in range(args.users):
                vecs = _unit(rng, args.per_user)
                for start in range(0, args.per_user, 1000):
                    end = min(args.per_user, start + 1000)
                    vault.add_many(
                        f"u{u}",
                        [
                            {"content": f"memory {i} of user {u}", "embedding": vecs[i]}
                            for i in range(start, end)
                        ],
                    )
            result["fresh"] = _measure(vault, rng, args.users, args.searches, args.facts, "a")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            result["analysed"] = _measure(vault, rng, args.users, args.searches, args.facts, "b")
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
