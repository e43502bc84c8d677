"""Extraction, measured on LoCoMo (dev half).

    .venv/bin/python bench/bench_extraction.py            # recall: raw turns vs raw + facts
    .venv/bin/python bench/bench_extraction.py --speed    # rule extractor and job pipeline

Recall runs ../shared/bench/retrieval_eval.py twice: `bench/retrieval_adapter.py` (raw
turns only) and `bench/extraction_adapter.py` (raw turns plus the facts the rule extractor
takes from them, each fact standing for its source turns). Speed: the rule extractor alone
over every turn (messages/s), then the whole path on a SQLite file: `remember` (message and
job in one transaction), the job run (extraction, consolidation, embedding of the facts,
one transaction per job).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "benchdata" / "locomo_dev.jsonl"


def conversations() -> list[dict[str, object]]:
    with DATA.open() as f:
        return [json.loads(line) for line in f]


def recall(limit: int | None) -> None:
    results = {}
    for name, adapter in (
        ("raw turns", "bench/retrieval_adapter.py:make"),
        ("raw turns + facts", "bench/extraction_adapter.py:make"),
    ):
        out = Path(tempfile.mkdtemp()) / "r.json"
        cmd = [
            sys.executable,
            str(SHARED / "bench" / "retrieval_eval.py"),
            str(DATA),
            "--retriever",
            adapter,
            "--json-out",
            str(out),
        ]
        if limit:
            cmd += ["--limit-convs", str(limit)]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - started
        data = json.loads(out.read_text())
        results[name] = (data, took)
    print("| index | R@1 | R@5 | R@10 | NDCG@10 | run |")
    print("|---|---:|---:|---:|---:|---:|")
    per_category: dict[str, dict[str, float]] = {}
    for name, (data, took) in results.items():
        (res,) = data["results"].values()
        o = res["overall"]
        print(
            f"| {name} | {o['recall@1']:.3f} | {o['recall@5']:.3f} | {o['recall@10']:.3f} "
            f"| {o['ndcg@10']:.3f} | {took:.0f} s |"
        )
        for cat, m in res.get("by_category", {}).items():
            per_category.setdefault(cat, {})[name] = m["recall@10"]
    print("\nrecall@10 by category")
    for cat, by in sorted(per_category.items()):
        print(f"  {cat:14s} " + "  ".join(f"{n}: {v:.3f}" for n, v in by.items()))


def speed(limit: int | None) -> None:
    from memvault import MemVault, Settings
    from memvault.extract import Turn
    from memvault.extract.rules import RuleExtractor

    convs = conversations()[: limit or None]
    turns = [t for c in convs for t in c["turns"]]  # type: ignore[attr-defined]
    x = RuleExtractor()
    now = datetime.now(UTC)
    for _ in range(2):  # the second pass is measured (regexes compiled, caches warm)
        started = time.perf_counter()
        facts = 0
        for t in turns:
            facts += len(x.extract(Turn("user", t["text"], now, None, t["speaker"]), []))
        took = time.perf_counter() - started
    print(
        f"rule extractor: {len(turns)} messages, {facts} facts, {took * 1000:.0f} ms: "
        f"{len(turns) / took:,.0f} messages/s ({took / len(turns) * 1e6:.1f} us each)"
    )
    with tempfile.TemporaryDirectory() as d:
        s = Settings(
            data_dir=d,
            database_url=f"sqlite:///{d}/x.db",
            job_worker=False,
            max_messages=100_000,
            summary_every_facts=0,
        )
        with MemVault(s) as v:
            v.add("warm", "warm the embedder up")
            sample = turns[:2000]
            started = time.perf_counter()
            for i in range(0, len(sample), 100):
                v.remember(
                    "bench",
                    [
                        {
                            "role": "user",
                            "content": t["text"],
                            "metadata": {"speaker": t["speaker"]},
                        }
                        for t in sample[i : i + 100]
                    ],
                )
            queued = time.perf_counter() - started
            started = time.perf_counter()
            while v.run_jobs(limit=500).claimed:
                pass
            ran = time.perf_counter() - started
            n_facts = len(v.get_user_facts("bench"))
            every = v.list_memories(
                "bench", filters={"memory_types": ["fact"], "include_superseded": True}, limit=1000
            ).items
    print(
        f"remember: {len(sample)} messages queued in {queued:.2f} s "
        f"({len(sample) / queued:,.0f} messages/s)"
    )
    print(
        f"jobs: {len(sample)} extracted in {ran:.2f} s ({len(sample) / ran:,.0f} messages/s); "
        f"{n_facts} current facts, {len(every) - n_facts} superseded or ended"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--speed", action="store_true", help="throughput instead of recall")
    ap.add_argument("--limit-convs", type=int, default=None)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found (the shared benchmark data sits beside the repository)")
    if args.speed:
        speed(args.limit_convs)
    else:
        recall(args.limit_convs)


if __name__ == "__main__":
    main()
