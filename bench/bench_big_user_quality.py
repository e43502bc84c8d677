"""What the full-text budget costs in quality for a user with very many memories.

    .venv/bin/python bench/bench_big_user_quality.py ../shared/benchdata/longmemeval_s_dev.jsonl.gz

Every conversation of the file goes into ONE user (up to --memories turns, turn ids made
unique per conversation); each question is then asked against all of them, lexical mode
(no model), once scoring every match (`search_lexical_budget=0`) and once with each
--budget. Prints recall@10 and NDCG@10 (the harness's definitions), the top-10 overlap
with the exact ranking and query latency. Data is read from ../shared, never copied.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from memvault import MemVault, Settings

USER = "everyone"


def load(path: str, memories: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    turns: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            conv = json.loads(line)
            if len(turns) + len(conv["turns"]) > memories:
                break
            cid = conv["conv_id"]
            for t in conv["turns"]:
                date = f"[{t['date']}] " if t.get("date") else ""
                turns.append(
                    {
                        "content": f"{date}{t['speaker']}: {t['text']}"[:4000],
                        "memory_type": "conversation",
                        "session_id": f"{cid}/{t['session']}"[:128],
                        "metadata": {"turn": f"{cid}/{t['id']}"},
                    }
                )
            for q in conv["questions"]:
                if q["evidence"]:
                    ev = {f"{cid}/{e}" for e in q["evidence"]}
                    questions.append({"question": q["question"], "evidence": ev})
    return turns, questions


def ndcg(ranked: list[str], evidence: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, r in enumerate(ranked[:k]) if r in evidence)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(evidence), k)))
    return dcg / ideal if ideal else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--budget", type=int, action="append", default=None)
    args = ap.parse_args()
    budgets = args.budget or [8000]
    turns, questions = load(args.data, args.memories)
    workdir = Path(tempfile.mkdtemp(prefix="mvbig-"))
    url = f"sqlite:///{workdir / 'big.db'}"
    with MemVault(Settings(data_dir=workdir, database_url=url, embedder="none")) as vault:
        for start in range(0, len(turns), 1000):
            vault.add_many(USER, turns[start : start + 1000])
    out: dict[str, Any] = {"memories": len(turns), "questions": len(questions)}
    exact: list[list[str]] = []
    for budget in [0, *budgets]:
        settings = Settings(
            data_dir=workdir, database_url=url, embedder="none", search_lexical_budget=budget
        )
        with MemVault(settings) as vault:
            ranked, lat = [], []
            for q in questions:
                t = time.perf_counter()
                hits = vault.search(USER, q["question"], k=10, mode="lexical")
                lat.append((time.perf_counter() - t) * 1000)
                ranked.append([str(h.memory.metadata["turn"]) for h in hits])
        if budget == 0:
            exact = ranked
        recall = [
            len(set(r[:10]) & q["evidence"]) / len(q["evidence"])
            for r, q in zip(ranked, questions, strict=True)
        ]
        overlap = sum(len(set(a) & set(b)) for a, b in zip(exact, ranked, strict=True)) / max(
            1, sum(len(a) for a in exact)
        )
        lat.sort()
        out[f"budget_{budget}"] = {
            "recall@10": round(statistics.mean(recall), 3),
            "ndcg@10": round(
                statistics.mean(
                    ndcg(r, q["evidence"]) for r, q in zip(ranked, questions, strict=True)
                ),
                3,
            ),
            "top10_overlap_with_exact": round(overlap, 3),
            "p50_ms": round(lat[len(lat) // 2], 1),
            "p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
