"""psycopg 3 against asyncpg on memvault's two hot statements, one connection each.

    .venv/bin/pip install asyncpg          # only for this comparison
    .venv/bin/python bench/bench_pg_driver.py --url postgresql://postgres@127.0.0.1:5432/test

1. A point read: one memory row by (user_id, memory_id), as `get` does; sequential, so the
   figure is the round trip plus the driver's own cost.
2. A batch insert of 100 rows of 22 columns, as `add_many` does, in one transaction.

Both drivers use prepared statements. Prints one JSON object (medians in microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import psycopg

SETUP = """
DROP TABLE IF EXISTS driver_bench;
CREATE TABLE driver_bench (
    pk bigserial PRIMARY KEY, memory_id text UNIQUE, user_id text, namespace text, key text,
    memory_type text, content text, content_hash text, metadata json, tags jsonb,
    category text, importance float8, access_count int, last_accessed_at timestamptz,
    expires_at timestamptz, session_id text, agent_id text, version int,
    deleted_at timestamptz, created_at timestamptz, updated_at timestamptz,
    search_context text
);
CREATE INDEX ON driver_bench (user_id, memory_id);
"""
COLS = (
    "memory_id, user_id, namespace, key, memory_type, content, content_hash, metadata, tags, "
    "category, importance, access_count, last_accessed_at, expires_at, session_id, agent_id, "
    "version, deleted_at, created_at, updated_at, search_context"
)
NOW = "2026-11-29T12:00:00.000000+00:00"


def row(i: int) -> tuple[Any, ...]:
    mid = f"mem_{uuid.uuid4().hex[:26]}"
    return (
        mid, f"user-{i % 100}", "default", mid, "note",
        f"Some remembered sentence number {i} about tea and travel", "h" * 64, "{}",
        '["a","b"]', None, 0.5, 0, None, None, None, None, 1, None, NOW, NOW, None,
    )  # fmt: skip


def med_us(values: list[float]) -> float:
    return round(statistics.median(values) * 1e6, 1)


def bench_psycopg(url: str, n: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
        marks = ", ".join(["%s"] * 21)
        ins = f"INSERT INTO driver_bench ({COLS}) VALUES ({marks})"
        batch = []
        for b in range(n // 100):
            rows = [row(b * 100 + j) for j in range(100)]
            t = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(ins, rows)
            batch.append(time.perf_counter() - t)
        ids = [(r[0], r[1]) for r in conn.execute("SELECT memory_id, user_id FROM driver_bench")]
        q = f"SELECT pk, {COLS} FROM driver_bench WHERE user_id = %s AND memory_id = %s"
        reads = []
        for mid, uid in ids[:n]:
            t = time.perf_counter()
            conn.execute(q, (uid, mid), prepare=True).fetchone()
            reads.append(time.perf_counter() - t)
    return {"point_read_us": med_us(reads), "insert_100_us": med_us(batch)}


async def bench_asyncpg(url: str, n: int) -> dict[str, float]:
    from datetime import datetime

    import asyncpg  # type: ignore[import-not-found]

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SETUP)
        marks = ", ".join(f"${i + 1}" for i in range(21))
        ins = await conn.prepare(f"INSERT INTO driver_bench ({COLS}) VALUES ({marks})")
        ts = datetime.fromisoformat(NOW)
        batch = []
        for b in range(n // 100):
            rows = [tuple(ts if v == NOW else v for v in row(b * 100 + j)) for j in range(100)]
            t = time.perf_counter()
            async with conn.transaction():
                await ins.executemany(rows)
            batch.append(time.perf_counter() - t)
        ids = await conn.fetch("SELECT memory_id, user_id FROM driver_bench")
        q = await conn.prepare(
            f"SELECT pk, {COLS} FROM driver_bench WHERE user_id = $1 AND memory_id = $2"
        )
        reads = []
        for rec in ids[:n]:
            t = time.perf_counter()
            await q.fetchrow(rec["user_id"], rec["memory_id"])
            reads.append(time.perf_counter() - t)
    finally:
        await conn.execute("DROP TABLE IF EXISTS driver_bench")
        await conn.close()
    return {"point_read_us": med_us(reads), "insert_100_us": med_us(batch)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("-n", type=int, default=5000)
    args = ap.parse_args()
    out: dict[str, Any] = {"psycopg": bench_psycopg(args.url, args.n)}
    try:
        out["asyncpg"] = asyncio.run(bench_asyncpg(args.url, args.n))
    except ImportError:
        out["asyncpg"] = "not installed (pip install asyncpg)"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
