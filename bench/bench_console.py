"""How fast the web console's pages answer (`/ui`, docs/console.md), on loopback.

    .venv/bin/python bench/bench_console.py [--memories 2000] [--rounds 30]

One user with `--memories` memories (one of them edited five times) and 100 messages, an
admin signed in; each main page fetched `--rounds` times after three warm-up fetches.
Prints p50 / p95 and the page size for each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import httpx
import uvicorn

from memvault import MemVault, Settings
from memvault.api import create_app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--memories", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--port", type=int, default=18833)
    args = ap.parse_args()
    d = tempfile.mkdtemp()
    s = Settings(data_dir=d, database_url=f"sqlite:///{d}/console.db")
    with MemVault(s) as v:
        _, admin = v.create_api_key(admin=True)
        items = [
            {"content": f"note {i} about tea, walks and the river {i % 7}", "tags": [f"t{i % 5}"]}
            for i in range(args.memories)
        ]
        for start in range(0, len(items), 500):
            v.add_many("alice", items[start : start + 500])
        m = v.list_memories("alice", limit=1).items[0]
        for i in range(5):
            v.update("alice", m.memory_id, content=f"edited {i}", actor="bench")
        for i in range(100):
            v.add_message("alice", "user", f"message {i}")
    server = uvicorn.Server(
        uvicorn.Config(create_app(s), host="127.0.0.1", port=args.port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    pages = {
        "dashboard": "/ui/",
        "users": "/ui/users",
        "user": "/ui/users/alice",
        "memories": "/ui/users/alice/memories",
        "search": "/ui/users/alice/memories?query=river+walk",
        "memory": f"/ui/users/alice/memories/{m.memory_id}",
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{args.port}") as c:
        c.post("/ui/login", data={"key": admin})
        for name, path in pages.items():
            for _ in range(3):
                c.get(path)
            took = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = c.get(path)
                took.append(time.perf_counter() - t)
                r.raise_for_status()
            took.sort()
            p95 = took[min(len(took) - 1, int(0.95 * len(took)))]
            print(
                f"{name:9} p50 {statistics.median(took) * 1000:5.1f} ms  "
                f"p95 {p95 * 1000:5.1f} ms  {len(r.content):6,} bytes"
            )
    server.should_exit = True


if __name__ == "__main__":
    main()
