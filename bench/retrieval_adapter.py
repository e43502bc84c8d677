"""memvault behind ../shared/bench/retrieval_eval.py (the retrieval quality harness).

    .venv/bin/python ../shared/bench/retrieval_eval.py ../shared/benchdata/locomo_dev.jsonl \
        --retriever bench/retrieval_adapter.py:make
    MEMVAULT_EMBEDDER=none ... (lexical-only mode)

Public API only. One conversation is one user; each turn is one memory whose content is the
harness's text (`[date] speaker: text`), with the conversation's session as `session_id` and
the turn id, speaker and date in metadata. Memories are written with `add_many` in batches
at `end_ingest`, as an application importing a conversation would.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from memvault import MemVault, Settings
from memvault.embed import shared_embedder

BATCH = 500
ROLES = ("user", "assistant")
CACHE = os.environ.get("MV_EVAL_EMBED_CACHE")


class MemvaultRetriever:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mv-eval-"))
        settings = Settings(
            data_dir=self.dir,
            database_url=f"sqlite:///{self.dir / 'eval.db'}",
            embedder=os.environ.get("MEMVAULT_EMBEDDER", "minilm"),
        )
        self.settings = settings
        self.vault = MemVault(settings)
        self.pending: dict[str, list[dict[str, Any]]] = {}

    def add(self, conv_id: str, turn_id: str, text: str, meta: dict[str, Any]) -> None:
        self.pending.setdefault(conv_id, []).append(
            {
                "content": text,
                "memory_type": "conversation",
                "session_id": str(meta.get("session") or "none")[:128],
                "metadata": {
                    "turn_id": turn_id,
                    "speaker": meta.get("speaker"),
                    "date": meta.get("date"),
                    # A chat log's role, as an application storing one records it (LoCoMo's
                    # speakers are two people, by name: no role).
                    **({"role": meta["speaker"]} if meta.get("speaker") in ROLES else {}),
                },
            }
        )

    def end_ingest(self, conv_id: str) -> None:
        items = self.pending.pop(conv_id, [])
        if CACHE and self.settings.embedder == "minilm":
            self._cached_vectors(conv_id, items)
        for start in range(0, len(items), BATCH):
            self.vault.add_many(conv_id, items[start : start + BATCH])

    def _cached_vectors(self, conv_id: str, items: list[dict[str, Any]]) -> None:
        """Development aid (MV_EVAL_EMBED_CACHE=dir): reuse this model's vectors of the same
        texts from an earlier run, passed as `embedding`. Ingest times are then not
        memvault's; quality figures are identical. Never used for reported speed."""
        texts = [it["content"] for it in items]
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = Path(CACHE) / f"{key}.npy"
        if path.exists():
            vecs = np.load(path)
        else:
            emb = shared_embedder(self.settings)
            assert emb is not None
            vecs = emb.embed(texts)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vecs)
        for it, v in zip(items, vecs, strict=True):
            it["embedding"] = v

    def search(self, conv_id: str, query: str, k: int) -> list[str]:
        hits = self.vault.search(conv_id, query, k=k)
        return [str(h.memory.metadata["turn_id"]) for h in hits]

    def drop(self, conv_id: str) -> None:
        self.vault.erase_user(conv_id)


def make() -> MemvaultRetriever:
    return MemvaultRetriever()
