"""memvault in ../shared/bench/peers/run.py (the peer benchmark), public API only.

    export MEMVAULT_PEER_ADAPTER=$PWD/bench/peer_adapter.py
    cd ../shared/bench/peers && /tmp/peers/bin/python run.py --peers floor,memvault ...

The harness gives every peer the same precomputed all-MiniLM-L6-v2 vectors. memvault takes
them as `embedding` on `add_many` and as `query_vector` on `search` (the excl.-embedding
passes); in the incl.-embedding pass it embeds with its own default embedder, the same
model run by onnxruntime (int8) rather than the harness's PyTorch copy: its figures there
include that model's cost, as a user's would. Search is `mode="vector"` so every peer
answers the same question (top-k by cosine within one user).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from base import Adapter  # type: ignore[import-not-found]  # the harness's module

from memvault import MemVault, Settings


class MemvaultAdapter(Adapter):  # type: ignore[misc]
    name = "memvault"
    accepts_vectors = True
    accepts_query_vector = True

    def version(self) -> str:
        return f"memvault {version('memvault')}"

    def setup(self, dim: int, embed: Any = None, workdir: str | None = None) -> None:
        assert workdir is not None
        self.dim = dim
        self.vault = MemVault(
            Settings(data_dir=workdir, database_url=f"sqlite:///{workdir}/memvault.db")
        )
        self.ids: dict[str, str] = {}  # harness id -> memory id
        self.back: dict[str, str] = {}

    def add_batch(self, user_id: str, ids: list[str], texts: list[str], vectors: Any) -> None:
        items: list[dict[str, Any]] = []
        for i, text in enumerate(texts):
            item: dict[str, Any] = {"content": text}
            if vectors is not None:
                item["embedding"] = vectors[i]
            items.append(item)
        for start in range(0, len(items), 1000):
            made = self.vault.add_many(user_id, items[start : start + 1000])
            for hid, mem in zip(ids[start : start + 1000], made, strict=True):
                self.ids[hid] = mem.memory_id
                self.back[mem.memory_id] = hid

    def search(self, user_id: str, query_text: str, query_vector: Any, k: int) -> list[str]:
        qv = query_vector  # a float32 numpy row: taken as is, no per-number conversion
        hits = self.vault.search(user_id, query_text, k=k, mode="vector", query_vector=qv)
        return [self.back[h.memory.memory_id] for h in hits]

    def get(self, user_id: str, id: str) -> str | None:
        mid = self.ids.get(id)
        if mid is None:
            return None
        got = self.vault.get_many(user_id, [mid])
        return str(got[0].content) if got else None

    def list_user(self, user_id: str, limit: int) -> list[str]:
        page = self.vault.list_memories(user_id, limit=min(limit, 1000))
        return [self.back[m.memory_id] for m in page.items]

    def close(self) -> None:
        self.vault.close()


def make(variant: str | None = None) -> MemvaultAdapter:
    return MemvaultAdapter()
