"""The peer benchmark's ingest and vector search, each peer in a fresh small process, peers
alternating round after round: memvault against another peer with nothing else loaded.

    /tmp/peers/bin/python bench/bench_peer_ingest.py --peers memvault,langgraph_sqlite
    /tmp/peers/bin/python bench/bench_peer_ingest.py --peers memvault,floor --rounds 8

Run it with the interpreter of ../shared/bench/peers (its README: that venv holds LangGraph,
Chroma and mem0, and memvault installed with `pip install -e .`). The workload is the
harness's own (`workload.generate`, same seed, `--users` x `--per-user`), memvault goes
through `bench/peer_adapter.py` and the others through the harness's adapters, exactly as
`run.py` calls them. What differs from `run.py`: no PyTorch model in the process (memories
carry random unit vectors, given to the peers that take vectors and handed out by a lookup
to those that embed, as the harness's cache does), and many short rounds in alternation,
so that a machine whose speed drifts from minute to minute drifts for every peer alike.
Each round prints one line per peer; the end, the medians. Times are the harness's: the
adapter call only (`add_batch` per user, `search` per query).

    /tmp/peers/bin/python bench/bench_peer_ingest.py --instructions --users 21 \
        --peers memvault,langgraph_sqlite,floor

counts instead of timing: each peer's ingest runs twice under callgrind (Debian's valgrind),
with and without all but the first user's batch, and the difference a memory is printed.
The count is the same from run to run whatever else the machine does (within a few
tenths of a percent: the checkpoint thread's rounds depend on time), so a change of a few
percent shows in one run where timing needs many rounds. It counts every thread, work moved
off the caller's thread included, and under callgrind the code runs about fifty times
slower, so what depends on the clock (a new id's millisecond, a flush interval) happens
more often than in a timed run.

    /tmp/peers/bin/python bench/bench_peer_ingest.py --statements --peers memvault,floor

times each SQL statement a peer runs through Python's `sqlite3` during its ingest (the
connections are made with a timing subclass), and prints how much of a memory's ingest
time SQLite took on the caller's thread, statement by statement, and on other threads.
What is left is the peer's Python. LangGraph's SQLite store connects through another
driver and shows no statements.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT.parent / "shared" / "bench" / "peers"
ADAPTERS = {  # harness name -> (module of ../shared/bench/peers, variant)
    "floor": ("floor_adapter", None),
    "langgraph_sqlite": ("langgraph_adapter", "sqlite"),
    "langgraph": ("langgraph_adapter", "memory"),
    "chroma": ("chroma_adapter", None),
}


def _setup(peer: str, users: int, per_user: int, queries: int, seed: int) -> Any:
    """The peer's adapter set up on a fresh directory, the workload, and its vectors."""
    import importlib.util

    import numpy as np

    sys.path.insert(0, str(PEERS_DIR))
    import workload  # type: ignore[import-not-found]  # the harness's module

    if peer == "memvault":
        spec = importlib.util.spec_from_file_location("mv_adapter", ROOT / "bench/peer_adapter.py")
        assert spec is not None
        assert spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ad = mod.make()
    else:
        name, variant = ADAPTERS[peer]
        ad = __import__(name).make(variant)
    wl = workload.generate(users, per_user, queries, seed)
    rng = np.random.default_rng(seed)
    texts = sorted({t for u in wl.users for _, t in wl.memories[u]} | {q for _, q, _ in wl.queries})
    vecs = rng.standard_normal((len(texts), 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vec_of = dict(zip(texts, vecs, strict=True))

    class Lookup:  # the harness's cache, for peers that embed themselves
        def embed(self, items: list[str]) -> Any:
            return np.stack([vec_of[t] for t in items])

        def embed_lists(self, items: list[str]) -> list[list[float]]:
            return [vec_of[t].tolist() for t in items]

    workdir = tempfile.mkdtemp(prefix=f"bench-peer-{peer}-")
    ad.setup(384, embed=Lookup(), workdir=workdir)
    return ad, wl, vec_of


def _one(peer: str, users: int, per_user: int, queries: int, seed: int) -> dict[str, Any]:
    """One peer, one round, in this process."""
    import numpy as np

    ad, wl, vec_of = _setup(peer, users, per_user, queries, seed)
    given = bool(ad.accepts_vectors)
    per_batch: list[float] = []
    for u in wl.users:
        ids = [i for i, _ in wl.memories[u]]
        batch = [t for _, t in wl.memories[u]]
        vectors = np.stack([vec_of[t] for t in batch]) if given else None
        t0 = time.perf_counter()
        ad.add_batch(u, ids, batch, vectors)
        per_batch.append(time.perf_counter() - t0)
    spent = sum(per_batch)
    tenth = max(1, len(per_batch) // 10)
    tenths = [  # us a memory in each tenth of the ingest, first to last
        round(sum(per_batch[i : i + tenth]) / (tenth * per_user) * 1e6, 1)
        for i in range(0, len(per_batch), tenth)
    ]
    lat = []
    for u, q, _ in wl.queries:
        qv = vec_of[q] if ad.accepts_query_vector else None
        t0 = time.perf_counter()
        ad.search(u, q, qv, 10)
        lat.append(time.perf_counter() - t0)
    ad.close()
    lat.sort()
    n = users * per_user
    return {
        "peer": peer,
        "ingest_per_s": round(n / spent),
        "ingest_us": round(spent / n * 1e6, 1),
        "ingest_us_by_tenth": tenths,
        "search_p50_ms": round(lat[len(lat) // 2] * 1e3, 3),
        "search_p95_ms": round(lat[int(len(lat) * 0.95)] * 1e3, 3),
    }


def _ingest_only(peer: str, users: int, per_user: int, seed: int, ingest: bool) -> None:
    """The ingest without timing, for callgrind: the first user's batch is written in both
    runs (a store's first write sets things up), the others only with `ingest`."""
    import numpy as np

    ad, wl, vec_of = _setup(peer, users, per_user, 1, seed)
    for u in wl.users[: users if ingest else 1]:
        batch = [t for _, t in wl.memories[u]]
        vectors = np.stack([vec_of[t] for t in batch]) if ad.accepts_vectors else None
        ad.add_batch(u, [i for i, _ in wl.memories[u]], batch, vectors)
    ad.close()


def _instructions(peer: str, users: int, per_user: int, seed: int) -> float:
    """Instructions a memory of the peer's ingest (every thread of the process), from two
    runs under callgrind, with and without all but the first user's batch."""
    counts = []
    for ingest in ("0", "1"):
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        cmd += [sys.executable, __file__, "--count", peer, "--ingest", ingest]
        cmd += ["--users", str(users), "--per-user", str(per_user), "--seed", str(seed)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", out.stderr)
        if found is None:
            sys.exit(f"no instruction count from callgrind:\n{out.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / ((users - 1) * per_user)


def _statements(peer: str, users: int, per_user: int, seed: int) -> None:
    """Ingest with every `sqlite3` statement timed; prints the shares (see the docstring)."""
    import sqlite3
    import threading

    import numpy as np

    caller = threading.get_ident()
    spent: dict[tuple[bool, str], list[float]] = {}

    def timed(
        run: Callable[..., sqlite3.Cursor], sql: str, many: bool, args: Any
    ) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return run(sql, *args)
        finally:
            key = (
                threading.get_ident() == caller,
                ("many " if many else "") + " ".join(sql.split()),
            )
            entry = spent.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - t0

    class Timed(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            return timed(super().execute, sql, False, args)

        def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
            return timed(super().executemany, sql, True, args)

    connect = sqlite3.connect

    def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", Timed)
        return connect(*args, **kwargs)

    sqlite3.connect = timed_connect  # type: ignore[assignment]
    ad, wl, vec_of = _setup(peer, users, per_user, 1, seed)
    total = 0.0
    for n, u in enumerate(wl.users):
        if n == 1:  # the first user's batch sets the store up: not counted
            spent.clear()
            total = 0.0
        batch = [t for _, t in wl.memories[u]]
        vectors = np.stack([vec_of[t] for t in batch]) if ad.accepts_vectors else None
        t0 = time.perf_counter()
        ad.add_batch(u, [i for i, _ in wl.memories[u]], batch, vectors)
        total += time.perf_counter() - t0
    ad.close()
    sqlite3.connect = connect  # type: ignore[assignment]
    n = (users - 1) * per_user
    on_caller = sum(v[1] for (mine, _), v in spent.items() if mine)
    elsewhere = sum(v[1] for (mine, _), v in spent.items() if not mine)
    print(
        f"{peer}: {total / n * 1e6:.1f} us a memory; SQLite on the caller's thread "
        f"{on_caller / n * 1e6:.1f} us ({on_caller / total:.0%}), the rest (Python) "
        f"{(total - on_caller) / n * 1e6:.1f} us; SQLite on other threads "
        f"{elsewhere / n * 1e6:.1f} us"
    )
    for (mine, sql), (calls, took) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:12]:
        where = "" if mine else "[other thread] "
        print(f"  {took / n * 1e6:6.2f} us  {calls:6d} calls  {where}{sql[:100]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="memvault,langgraph_sqlite")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--instructions", action="store_true", help="count, not time (callgrind)")
    ap.add_argument(
        "--statements", action="store_true", help="SQLite's share, statement by statement"
    )
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a round's child process
    ap.add_argument("--count", help=argparse.SUPPRESS)  # a child under callgrind
    ap.add_argument("--ingest", default="1", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.users, args.per_user, args.queries, args.seed)))
        return
    if args.count:
        _ingest_only(args.count, args.users, args.per_user, args.seed, args.ingest == "1")
        return
    if not (PEERS_DIR / "workload.py").exists():
        sys.exit(f"{PEERS_DIR} not found (the peer benchmark sits beside the repository)")
    peers = args.peers.split(",")
    if args.statements:
        for peer in peers:
            _statements(peer, args.users, args.per_user, args.seed)
        return
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("--instructions needs valgrind (Debian's valgrind package)")
        for peer in peers:
            per = _instructions(peer, args.users, args.per_user, args.seed)
            print(f"{peer}: {per / 1000:.1f}k instructions a memory", flush=True)
        return
    got: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    for r in range(args.rounds):
        order = peers if r % 2 == 0 else peers[::-1]
        for peer in order:
            cmd = [sys.executable, __file__, "--one", peer, "--users", str(args.users)]
            cmd += ["--per-user", str(args.per_user), "--queries", str(args.queries)]
            cmd += ["--seed", str(args.seed)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            got[peer].append(row)
            print(f"round {r}: {json.dumps(row)}", flush=True)
    summary = {
        p: {
            k: statistics.median(row[k] for row in rows)
            for k in ("ingest_per_s", "ingest_us", "search_p50_ms", "search_p95_ms")
        }
        for p, rows in got.items()
    }
    print(json.dumps({"medians": summary, "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    main()
