"""REST speed under load: wrk (Debian package `wrk`) on loopback, concurrency 16, against
`memvault serve` holding 100k memories (1,000 users x 100) and, in the same run, against a
trivial FastAPI endpoint served the same way (uvicorn, one worker, httptools + uvloop).

    apt-get install wrk
    .venv/bin/python bench/bench_rest.py                    # 100k memories, 10 s per load
    .venv/bin/python bench/bench_rest.py --users 100 --duration 5   # a quick look
    .venv/bin/python bench/bench_rest.py --workers 2       # both servers with two workers
    .venv/bin/python bench/bench_rest.py \
        --corpus ../shared/benchdata/longmemeval_s_dev.jsonl.gz      # real turns and questions

Loads, each for `--duration` seconds with `--connections` connections on one wrk thread:
- `trivial`: `GET /ping` of bench/trivial_app.py;
- `get`: `GET /v1/memories/{id}` with each user's own API key, over random memories;
- `search`: `POST /v1/search` (hybrid, k=10) with a user's key, every query new (the query
  cache never hits), so each request embeds its query.
Beside them, `embedder_single_query_per_s`: the embedder alone, one query per call, in this
process, on 600 queries of the search load, measured before the loads and again right after
the search load (both printed; the ratio uses their mean, as the machine drifts).
Memories reuse vectors of a pool embedded once (as bench_search.py does); their texts
are generated sentences from a few dozen words (every query shares words with most
memories: the full-text index's worst case), or with `--corpus` real conversation turns and
questions (the questions repeat with a number appended, so no query repeats). Prints
one JSON object: rates, p50/p95 in ms, and the two ratios the issue sets targets for.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_search import corpus, sentence

from memvault import MemVault, Settings
from memvault.embed.minilm_onnx import MiniLMEmbedder

LUA = """
local lines = {}
for line in io.lines("%(targets)s") do lines[#lines + 1] = line end
local i = math.random(#lines)
request = function()
  i = i %% #lines + 1
  local method, path, key, body = lines[i]:match("([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)")
  local headers = {["X-API-Key"] = key, ["Content-Type"] = "application/json"}
  if body == "" then body = nil end
  return wrk.format(method, path, headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%d\\n", summary.requests,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def build(
    workdir: Path, users: int, per_user: int, pool_size: int, texts: list[str]
) -> list[tuple[str, str, str]]:
    """Store the memories; return (user, key secret, memory_id) rows."""
    rng = random.Random(3)
    emb = MiniLMEmbedder()
    if texts:
        pool = texts[:pool_size]
    else:
        pool = list(dict.fromkeys(sentence(rng) for _ in range(pool_size * 2)))[:pool_size]
    vecs = emb.embed(pool)
    cursor = 0
    settings = Settings(data_dir=workdir, database_url=f"sqlite:///{workdir / 'r.db'}")
    rows = []
    with MemVault(settings) as v:
        for u in range(users):
            user = f"user-{u:05d}"
            idx = [rng.randrange(len(pool)) for _ in range(per_user)]
            if texts:  # real turns in order; vectors borrowed from the pool
                contents = [texts[(cursor + j) % len(texts)] for j in range(per_user)]
                cursor += per_user
            else:
                contents = [pool[i] for i in idx]
            made = v.add_many(
                user,
                [
                    {"content": c, "embedding": vecs[i].tolist()}
                    for c, i in zip(contents, idx, strict=True)
                ],
            )
            _, secret = v.create_api_key(user)
            rows.extend((user, secret, m.memory_id) for m in made)
    return rows


def serve(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start: {proc.stderr.read() if proc.stderr else ''}")


def wrk(url: str, targets: Path, args: argparse.Namespace, lua_dir: Path) -> dict[str, float]:
    script = lua_dir / f"{targets.stem}.lua"
    script.write_text(LUA % {"targets": targets})
    out = subprocess.run(
        ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", out)
    assert m, out
    n, micros, p50, p95, errors = m.groups()
    return {
        "per_s": round(int(n) / (int(micros) / 1e6), 1),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "errors": int(errors),
    }


def single_query_rate(queries: list[str]) -> float:
    """The embedder alone on the search load's own queries, one per call."""
    emb = MiniLMEmbedder()
    n = len(queries) - 10
    for q in queries[:10]:
        emb.embed([q])
    t0 = time.perf_counter()
    for q in queries[10:]:
        emb.embed([q])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=100)
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument(
        "--workers", type=int, default=1, help="worker processes of both servers (default 1)"
    )
    ap.add_argument("--corpus", help="benchmark JSONL(.gz): its turns and questions instead")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mvrest-"))
    texts: list[str] = []
    questions: list[str] = []
    if args.corpus:
        texts, questions = corpus(args.corpus, args.users * args.per_user)
    rows = build(workdir, args.users, args.per_user, args.pool, texts)
    rng = random.Random(4)
    gets = workdir / "get.tsv"
    gets.write_text(
        "".join(
            f"GET\t/v1/memories/{mid}\t{key}\t\n"
            for _, key, mid in rng.sample(rows, min(20000, len(rows)))
        )
    )
    keys = {user: key for user, key, _ in rows}
    users = sorted(keys)
    searches = workdir / "search.tsv"
    n_queries = 200_000  # more than any run sends: no query repeats
    with searches.open("w") as fh:
        for i in range(n_queries):
            user = rng.choice(users)
            text = questions[i % len(questions)] if questions else sentence(rng)
            body = json.dumps({"query": f"{text} number {i}", "k": 10})
            fh.write(f"POST\t/v1/search\t{keys[user]}\t{body}\n")

    bench = Path(__file__).parent
    env = {
        **os.environ,
        "MEMVAULT_DATA_DIR": str(workdir),
        "MEMVAULT_DATABASE_URL": f"sqlite:///{workdir / 'r.db'}",
        "MEMVAULT_LOG_LEVEL": "WARNING",
    }
    result: dict[str, object] = {
        "memories": len(rows),
        "users": args.users,
        "workers": args.workers,
    }
    load = [json.loads(line.split("\t", 3)[3])["query"] for line in searches.open()][:610]
    before = single_query_rate(load)
    uv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--no-access-log",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
    ]
    workers = ["--workers", str(args.workers)] if args.workers > 1 else []
    trivial = serve(
        [
            *uv,
            *workers,
            "--port",
            str(args.port + 1),
            "--app-dir",
            str(bench),
            "trivial_app:app",
        ],
        args.port + 1,
        env,
    )
    try:
        ping = workdir / "ping.tsv"
        ping.write_text("GET\t/ping\tnone\t\n")
        result["trivial"] = wrk(f"http://127.0.0.1:{args.port + 1}", ping, args, workdir)
    finally:
        trivial.terminate()
        trivial.wait()
    server = serve(
        [sys.executable, "-m", "memvault", "serve", *workers, "--port", str(args.port)],
        args.port,
        env,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        warm = [x for x in searches.read_text().splitlines()[-50:]]
        for line in warm:  # load the model and the vector matrices of a few users
            _, _, key, body = line.split("\t", 3)
            httpx.post(
                f"{base}/v1/search",
                content=body,
                headers={"X-API-Key": key, "content-type": "application/json"},
                timeout=60,
            )
        result["get"] = wrk(base, gets, args, workdir)
        result["search"] = wrk(base, searches, args, workdir)
    finally:
        server.terminate()
        server.wait()
    # The yardstick drifts with the machine (by a quarter between runs here): measured
    # before the loads and again right after the search load, the ratio uses their mean.
    after = single_query_rate(load)
    result["embedder_single_query_per_s_before_after"] = [round(before, 1), round(after, 1)]
    result["embedder_single_query_per_s"] = round((before + after) / 2, 1)
    t, g, s = result["trivial"], result["get"], result["search"]
    result["get_vs_trivial"] = round(g["per_s"] / t["per_s"], 3)  # type: ignore[index]
    result["search_vs_embedder"] = round(
        s["per_s"] / result["embedder_single_query_per_s"],
        3,  # type: ignore[index,operator]
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
