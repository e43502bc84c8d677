"""Orchestrator speed on loopback, beside a bare pyzmq REQ/REP echo server in the same run.

    .venv/bin/python bench/bench_zmq.py                        # 100k memories, 8 s per load
    .venv/bin/python bench/bench_zmq.py --users 100 --duration 4   # a quick look

Loads (client processes with REQ sockets, one request in flight each):
- `echo`: one client against a REP socket that sends each message back (the yardstick);
- `get_1`: one client, `get_memory` over 200 memories of one user (cached after the first
  round);
- `get_8`: eight clients at once, the same; the total rate;
- `search_8`: eight clients, `search` with a new query every time (no cache hits), so each
  request embeds its query; beside it, the embedder alone on the same queries, one per call.
Memories: 1,000 users x 100 as in bench_rest.py (vectors from a pool embedded once).
Prints one JSON object: rates, p50/p95 in ms, and the ratios the issue sets targets for.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_rest import build, single_query_rate
from bench_search import corpus, pct, sentence


def echo_server(address: str) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind(address)
    while True:
        sock.send_multipart(sock.recv_multipart())


def load(
    address: str, key: str, kind: str, items: list[str], seconds: float, out: mp.Queue
) -> None:
    import zmq

    from memvault.zmq import MemoryClient

    lat: list[float] = []
    if kind == "echo":
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.connect(address)
        msg = b'{"action": "get_memory", "payload": {"memory_id": "mem_x"}}'
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            sock.send(msg)
            sock.recv()
            lat.append(time.perf_counter() - t)
        out.put(lat)
        return
    client = MemoryClient(address, api_key=key, timeout_ms=60_000)
    i = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        if kind == "get":
            r = client.get_memory(items[i % len(items)])
        else:
            r = client.search(items[i % len(items)], k=10)
        lat.append(time.perf_counter() - t)
        assert r["status"] == "success", r
        i += 1
    client.close()
    out.put(lat)


def run(address: str, kind: str, jobs: list[tuple[str, list[str]]], seconds: float) -> dict:
    """One client process per (API key, items) job, all at once for `seconds`."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=load, args=(address, key, kind, items, seconds, q))
        for key, items in jobs
    ]
    for p in procs:
        p.start()
    lats = [q.get() for _ in procs]
    for p in procs:
        p.join()
    every = [x * 1000 for lat in lats for x in lat]
    return {
        "per_s": round(len(every) / seconds, 1),
        "p50_ms": round(statistics.median(every), 3),
        "p95_ms": round(pct(every, 95), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--port", type=int, default=15570)
    ap.add_argument("--corpus", help="benchmark JSONL(.gz): its turns and questions instead")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mvzmq-"))
    texts: list[str] = []
    questions: list[str] = []
    if args.corpus:
        texts, questions = corpus(args.corpus, args.users * args.per_user)
    rows = build(workdir, args.users, args.per_user, args.pool, texts)
    user0 = [r for r in rows if r[0] == rows[0][0]]
    key0 = user0[0][1]
    ids0 = [r[2] for r in user0][:200]
    rng = random.Random(8)
    keys = {u: k for u, k, _ in rows}
    n_q = 100_000
    queries = [
        f"{questions[i % len(questions)] if questions else sentence(rng)} number {i}"
        for i in range(n_q)
    ]
    result: dict[str, object] = {"memories": len(rows), "users": args.users}
    result["embedder_single_query_per_s"] = round(single_query_rate(queries[-310:]), 1)

    ctx = mp.get_context("spawn")
    echo_addr = f"tcp://127.0.0.1:{args.port + 1}"
    echo = ctx.Process(target=echo_server, args=(echo_addr,), daemon=True)
    echo.start()
    time.sleep(0.5)
    result["echo"] = run(echo_addr, "echo", [("", [])], args.duration)
    echo.terminate()

    env = {
        **os.environ,
        "MEMVAULT_DATA_DIR": str(workdir),
        "MEMVAULT_DATABASE_URL": f"sqlite:///{workdir / 'r.db'}",
        "MEMVAULT_ZMQ_ADDRESS": f"tcp://127.0.0.1:{args.port}",
        "MEMVAULT_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "memvault", "orchestrator"], env=env, stderr=subprocess.PIPE
    )
    address = f"tcp://127.0.0.1:{args.port}"
    try:
        from memvault.zmq import MemoryClient

        warm = MemoryClient(address, api_key=key0, timeout_ms=120_000)
        assert warm.health()["status"] == "success"
        for mid in ids0:
            warm.get_memory(mid)
        warm.search("warm up the model")
        result["get_1"] = run(address, "get", [(key0, ids0)], args.duration)
        result["get_8"] = run(address, "get", [(key0, ids0)] * 8, args.duration)
        # Search: eight clients, each with a user's key and its own queries.
        users = sorted(keys)
        jobs = [(keys[users[i]], queries[i::8]) for i in range(8)]
        result["search_8"] = run(address, "search", jobs, args.duration)
    finally:
        server.terminate()
        server.wait()
    e, g1, g8, s8 = (result[k] for k in ("echo", "get_1", "get_8", "search_8"))
    result["get_1_vs_echo"] = round(g1["per_s"] / e["per_s"], 3)  # type: ignore[index]
    result["get_8_vs_get_1"] = round(g8["per_s"] / g1["per_s"], 3)  # type: ignore[index]
    result["search_vs_embedder"] = round(
        s8["per_s"] / result["embedder_single_query_per_s"],
        3,  # type: ignore[index,operator]
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
