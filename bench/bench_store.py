"""Storage benchmark of the foundation: ingest, get by id, list by user.

    .venv/bin/python bench/bench_store.py --users 1000 --per-user 100
    .venv/bin/python bench/bench_store.py --users 1000 --per-user 100 --vectors
    .venv/bin/python bench/bench_store.py --users 30 --per-user 300 --batch 100 --vectors \
        --memory-type fact --gets 0 --lists 0

Batch insert (no embeddings; full-text index and history maintained), then get-by-id and
list-by-user (100 rows) latencies through the blocking library and the async API. With
`--vectors`, each memory comes with a caller-given 384-number unit vector (as the peer
benchmark's ingest does: the vector index is kept too, the model never runs), and the
median time of one `add_many` batch is reported beside the rate. `--memory-type fact` makes
every memory a fact, which dedup on write checks against the user's stored ones (with
`--batch` under `--per-user`, each user's later batches meet its earlier ones). Prints one
JSON object; run on an idle machine and quote medians of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from memvault import AsyncMemVault, MemVault, Settings

WORDS = [
    "tea",
    "coffee",
    "sister",
    "brother",
    "Lisbon",
    "Osaka",
    "pilot",
    "nurse",
    "hiking",
    "reading",
    "allergy",
    "peanuts",
    "marathon",
    "Monday",
    "Friday",
    "budget",
    "garden",
    "piano",
    "dentist",
    "flight",
    "ramen",
    "jazz",
    "python",
    "rust",
]


def text(rng: random.Random) -> str:
    return "I " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--gets", type=int, default=5000)
    ap.add_argument("--lists", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--vectors", action="store_true", help="give each memory a vector")
    ap.add_argument("--memory-type", default=None, help="type of every memory (fact: deduped)")
    ap.add_argument("--batch", type=int, default=None, help="memories an add_many (per-user)")
    args = ap.parse_args()
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be at least 1")
    rng = random.Random(7)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="mvbench-"))
    settings = Settings(
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        embedder="minilm" if args.vectors else "none",
    )
    users = [f"user-{i:05d}" for i in range(args.users)]
    batches = {
        u: [{"content": text(rng), "tags": [rng.choice(WORDS)]} for _ in range(args.per_user)]
        for u in users
    }
    if args.memory_type is not None:
        for items in batches.values():
            for item in items:
                item["memory_type"] = args.memory_type
    if args.vectors:
        gen = np.random.default_rng(7)
        for items in batches.values():
            vecs = gen.standard_normal((len(items), 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            for item, vec in zip(items, vecs, strict=True):
                item["embedding"] = vec
    result: dict[str, float | int | str] = {"memories": args.users * args.per_user}

    vault = MemVault(settings)
    ids: list[tuple[str, str]] = []
    per_batch = []
    t0 = time.perf_counter()
    size = args.batch or args.per_user
    for start in range(0, args.per_user, size):
        for u in users:
            t = time.perf_counter()
            ids += [(u, m.memory_id) for m in vault.add_many(u, batches[u][start : start + size])]
            per_batch.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - t0
    result["ingest_per_s"] = round(len(ids) / elapsed)
    result["ingest_us_per_memory"] = round(elapsed / len(ids) * 1e6, 1)
    result["ingest_batch_p50_ms"] = round(statistics.median(per_batch), 3)
    result["ingest_batch_p95_ms"] = round(pct(per_batch, 95), 3)
    if not ids or args.gets == 0 or args.lists == 0:
        vault.close()
        print(json.dumps(result, indent=2))
        return

    sample = [rng.choice(ids) for _ in range(args.gets)]
    lat = []
    for u, mid in sample:
        t = time.perf_counter()
        vault.get(u, mid)
        lat.append((time.perf_counter() - t) * 1000)
    result["get_p50_ms"] = round(statistics.median(lat), 4)
    result["get_p95_ms"] = round(pct(lat, 95), 4)
    lat = []
    for _ in range(args.lists):
        u = rng.choice(users)
        t = time.perf_counter()
        page = vault.list_memories(u, limit=100)
        lat.append((time.perf_counter() - t) * 1000)
        assert len(page.items) == min(100, args.per_user)
    result["list100_p50_ms"] = round(statistics.median(lat), 4)
    result["list100_p95_ms"] = round(pct(lat, 95), 4)
    vault.close()

    async def run_async() -> None:
        av = await AsyncMemVault.open(settings)
        lat_get, lat_list = [], []
        for u, mid in sample[:2000]:
            t = time.perf_counter()
            await av.get(u, mid)
            lat_get.append((time.perf_counter() - t) * 1000)
        for _ in range(args.lists):
            u = rng.choice(users)
            t = time.perf_counter()
            await av.list_memories(u, limit=100)
            lat_list.append((time.perf_counter() - t) * 1000)
        await av.close()
        result["async_get_p50_ms"] = round(statistics.median(lat_get), 4)
        result["async_list100_p50_ms"] = round(statistics.median(lat_list), 4)

    asyncio.run(run_async())
    result["db_mib"] = round((workdir / "bench.db").stat().st_size / 2**20, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
