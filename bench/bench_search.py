"""Search speed: end-to-end through the blocking library, query embedding included.

    .venv/bin/python bench/bench_search.py --users 1000 --per-user 100      # 100k memories
    .venv/bin/python bench/bench_search.py --users 1000 --per-user 100 --bm25-only
    .venv/bin/python bench/bench_search.py --users 1 --per-user 100000      # one big user
    .venv/bin/python bench/bench_search.py --ingest-only --texts 2000       # ingest with model
    .venv/bin/python bench/bench_search.py --users 1 --per-user 100000 \
        --corpus ../shared/benchdata/longmemeval_s_dev.jsonl.gz             # real text, one user

Memories are 8-30 word sentences from a fixed vocabulary. To keep set-up short, a pool of
`--pool` distinct texts is embedded once with the real model and memories reuse those
vectors (passed as `embedding`); queries are new sentences embedded inside the timed call
(a fresh query each time: the query cache never hits). Prints one JSON object; quote
medians of several runs on an idle machine.

`--corpus FILE` (a benchmark file of ../shared/benchdata) takes memory texts from its
conversations' turns and queries from its questions instead: real vocabulary, where the
generated sentences share a few dozen words and make every query match most memories.

`--url postgresql://.../db --recreate` runs the same on PostgreSQL (the database is dropped
and made again first); `--big N` adds one more user with N memories, searched separately
(`big_*` figures). The issue-6 workload, 10,000 users x 100 plus one user with 200k:

    .venv/bin/python bench/bench_search.py --users 10000 --per-user 100 --big 200000 \
        --url postgresql://postgres@127.0.0.1:5432/memvault_bench --recreate

`--ingest-only` measures ingest with embeddings computed by memvault (`add_many`, no given
vectors) against the embedder's own batched throughput on the same texts.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from memvault import MemVault, Settings
from memvault.embed.minilm_onnx import MiniLMEmbedder
from memvault.errors import NotFoundError

SUBJECTS = ["I", "My sister", "My manager", "Our neighbour", "My son", "My friend Ana"]
VERBS = ["love", "hate", "often visit", "want to learn", "keep talking about", "bought"]
THINGS = [
    "green tea",
    "the piano",
    "Lisbon",
    "rock climbing",
    "sourdough bread",
    "a red bicycle",
    "jazz records",
    "the dentist",
    "marathon training",
    "Japanese grammar",
    "our garden",
    "board games",
    "a vintage camera",
    "spicy ramen",
    "the night shift",
    "salsa dancing",
    "a golden retriever",
    "tax forms",
    "the Alps",
    "oil painting",
    "chess openings",
    "a leaking roof",
    "birdwatching",
    "the school play",
    "a used car",
    "yoga at dawn",
]
TAILS = [
    "every weekend",
    "since last spring",
    "when it rains",
    "after work",
    "with the kids",
    "on Mondays",
    "during the holidays",
    "before breakfast",
    "more than anything",
    "lately",
]


def sentence(rng: random.Random) -> str:
    extra = " and ".join(rng.choice(THINGS) for _ in range(rng.randint(0, 3)))
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(THINGS)}"
    if extra:
        text += f" and {extra}"
    return f"{text} {rng.choice(TAILS)}"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def corpus(path: str, memories: int) -> tuple[list[str], list[str]]:
    """Turn texts (up to `memories`) and questions of a benchmark file."""
    texts: list[str] = []
    questions: list[str] = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            conv = json.loads(line)
            for turn in conv["turns"]:
                if len(texts) < memories:
                    texts.append(f"{turn['speaker']}: {turn['text']}"[:4000])
            questions.extend(q["question"] for q in conv["questions"])
            if len(texts) >= memories:
                break
    return texts, questions


def run_search(args: argparse.Namespace) -> dict[str, float | int]:
    rng = random.Random(11)
    emb = MiniLMEmbedder()
    texts: list[str] = []
    if args.corpus:
        texts, questions = corpus(args.corpus, args.users * args.per_user)
        pool = texts[: args.pool]
    else:
        pool = list(dict.fromkeys(sentence(rng) for _ in range(args.pool * 2)))[: args.pool]
    t0 = time.perf_counter()
    pool_vecs = emb.embed(pool)
    embed_s = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix="mvsearch-"))
    url = args.url or f"sqlite:///{workdir / 's.db'}"
    if args.recreate:
        recreate(url)
    settings = Settings(data_dir=workdir, database_url=url)
    vault = MemVault(settings)
    users = [f"user-{i:05d}" for i in range(args.users)]
    cursor = 0
    t0 = time.perf_counter()
    sizes = {u: args.per_user for u in users}
    if args.big:
        sizes["big-user"] = args.big
    for u, size in sizes.items():
        left = size if args.ingest == "all" or (args.ingest == "big" and u == "big-user") else 0
        if left and args.ingest == "big":
            with contextlib.suppress(NotFoundError):
                vault.erase_user(u)
        while left:
            n = min(left, 1000)
            idx = [rng.randrange(len(pool)) for _ in range(n)]
            if texts:  # real texts in order (then again); vectors borrowed from the pool
                contents = [texts[(cursor + j) % len(texts)] for j in range(n)]
                cursor += n
            else:
                contents = [pool[i] for i in idx]
            vault.add_many(
                u,
                [
                    {"content": c, "embedding": jitter(pool_vecs[i], args.noise, rng)}
                    for c, i in zip(contents, idx, strict=False)
                ],
            )
            left -= n
    ingest_s = time.perf_counter() - t0
    stored = sum(sizes.values())
    ingested = {"all": stored, "big": args.big, "none": 0}[args.ingest]
    # Every timed query is new to the query cache: hybrid and lexical share one set, vector
    # mode gets its own (the file's questions repeat with a number once used up).
    total = 20 + 2 * (args.queries - 20)
    if args.corpus:
        queries = [
            questions[i] if i < len(questions) else f"{questions[i % len(questions)]} ({i})"
            for i in range(total)
        ]
    else:
        queries = [sentence(rng) + f" number {i}" for i in range(total)]
    timed = {"hybrid": queries[20 : args.queries], "lexical": queries[20 : args.queries]}
    timed["vector"] = queries[args.queries :]
    for q in queries[:20]:  # warm the model and the vector cache
        vault.search(rng.choice(users), q)
    out: dict[str, float | int] = {
        "backend": url.split(":", 1)[0],
        "memories": stored,
        "users": len(sizes),
        "ingested": ingested,
        "ingest_given_vectors_per_s": round(ingested / ingest_s) if ingested else 0,
        "pool_embed_texts_per_s": round(len(pool) / embed_s),
    }
    for mode in ("hybrid", "lexical", "vector"):
        lat = []
        for q in timed[mode]:
            u = rng.choice(users)
            t = time.perf_counter()
            hits = vault.search(u, q, k=10, mode=mode)  # type: ignore[arg-type]
            lat.append((time.perf_counter() - t) * 1000)
            assert hits
        out[f"{mode}_p50_ms"] = round(statistics.median(lat), 3)
        out[f"{mode}_p95_ms"] = round(pct(lat, 95), 3)
    if args.big:
        for q in queries[:5]:
            vault.search("big-user", q)
        for mode in ("hybrid", "vector"):
            lat = []
            for i, q in enumerate(timed[mode][: args.big_queries]):
                t = time.perf_counter()
                hits = vault.search("big-user", f"{q} {i}", k=10, mode=mode)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t) * 1000)
                assert len(hits) == 10
            out[f"big_{mode}_p50_ms"] = round(statistics.median(lat), 3)
            out[f"big_{mode}_p95_ms"] = round(pct(lat, 95), 3)
    vault.close()
    return out


def jitter(vec: Any, noise: float, rng: random.Random) -> list[float]:
    """A pool vector, with `noise` of it replaced by a random direction (unit length)."""
    if noise <= 0:
        return list(vec.tolist())
    import numpy as np

    r = np.random.default_rng(rng.randrange(2**32)).standard_normal(vec.shape[0])
    out = vec + noise * r / np.linalg.norm(r)
    return list((out / np.linalg.norm(out)).tolist())


def recreate(url: str) -> None:
    """Drop and create the PostgreSQL database `url` names (from the server's `postgres`
    database)."""
    if not url.startswith("postgres"):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def run_ingest(args: argparse.Namespace) -> dict[str, float | int]:
    rng = random.Random(5)
    texts = [sentence(rng) + f" ({i})" for i in range(args.texts)]
    emb = MiniLMEmbedder()
    emb.embed(texts[:32])
    t0 = time.perf_counter()
    emb.embed(texts)
    alone = len(texts) / (time.perf_counter() - t0)
    workdir = Path(tempfile.mkdtemp(prefix="mvingest-"))
    vault = MemVault(Settings(data_dir=workdir, database_url=f"sqlite:///{workdir / 'i.db'}"))
    vault.add("warm", "warm up the model")
    t0 = time.perf_counter()
    for start in range(0, len(texts), 500):
        vault.add_many("u", [{"content": t} for t in texts[start : start + 500]])
    through = len(texts) / (time.perf_counter() - t0)
    vault.close()
    return {
        "texts": len(texts),
        "embedder_alone_per_s": round(alone, 1),
        "memvault_ingest_per_s": round(through, 1),
        "ratio": round(through / alone, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=520)
    ap.add_argument("--ingest-only", action="store_true")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--corpus", help="benchmark JSONL(.gz) whose turns and questions to use")
    ap.add_argument("--url", help="database URL (default: a new SQLite file)")
    ap.add_argument("--recreate", action="store_true", help="drop and create --url first")
    ap.add_argument("--big", type=int, default=0, help="one more user with this many")
    ap.add_argument("--big-queries", type=int, default=200)
    ap.add_argument(
        "--ingest",
        choices=["all", "big", "none"],
        default="all",
        help="none: search what --url holds; big: make only the big user again",
    )
    ap.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="add this much random noise to each borrowed vector (distinct vectors, as real "
        "memories have; without it the pool's vectors repeat, which HNSW handles badly)",
    )
    ap.add_argument(
        "--bm25-only",
        action="store_true",
        help="SQLite: every full-text query scored by FTS5's bm25() itself, not per user "
        "(storage/fts_plan.py, TermStats.top): the comparison for that change",
    )
    args = ap.parse_args()
    if args.bm25_only:
        from memvault.storage import fts_plan

        fts_plan.LOCAL_ROWS = 0
    result = run_ingest(args) if args.ingest_only else run_search(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
