"""memvault with extracted facts behind ../shared/bench/retrieval_eval.py.

    .venv/bin/python ../shared/bench/retrieval_eval.py ../shared/benchdata/locomo_dev.jsonl \
        --retriever bench/extraction_adapter.py:make

The raw turns are stored as `bench/retrieval_adapter.py` stores them; then every turn goes
through `remember` (role `user`, its speaker in metadata) and the rule extractor's jobs run,
so the index holds raw turns plus extracted facts. A fact found by search stands for the
turns it came from (metadata `sources` -> message ids -> turn ids); the first k distinct
turn ids are returned (search asks for 2k hits, so a fact and its own turn do not take two
of the k places).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from memvault import MemVault

# The harness loads adapters by file path: the raw-turn adapter beside this file, likewise.
_spec = importlib.util.spec_from_file_location(
    "memvault_retrieval_adapter", Path(__file__).with_name("retrieval_adapter.py")
)
assert _spec is not None
assert _spec.loader is not None
_raw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_raw)
MemvaultRetriever = _raw.MemvaultRetriever

CHUNK = 100  # messages per remember call (limits.MAX_REMEMBER_MESSAGES)
# Which source turns a fact hit stands for: all of them, or the first or last not yet listed.
SOURCES = os.environ.get("MV_FACT_SOURCES", "all")


class FactsRetriever(MemvaultRetriever):  # type: ignore[misc,valid-type]
    def __init__(self) -> None:
        super().__init__()
        self.vault.close()
        self.settings = self.settings.model_copy(
            update={
                "job_worker": False,
                "max_messages": 100_000,
                "summary_every_facts": 0,
                "extractor": os.environ.get("MV_EXTRACTOR", "rules"),
            }
        )
        self.vault = MemVault(self.settings)
        self.turns: dict[str, list[tuple[str, str, str | None]]] = {}
        self.source: dict[str, str] = {}  # message id -> turn id
        self.facts = 0

    def add(self, conv_id: str, turn_id: str, text: str, meta: dict[str, Any]) -> None:
        super().add(conv_id, turn_id, text, meta)
        raw = str(meta.get("raw_text") or text)
        speaker = meta.get("speaker")
        self.turns.setdefault(conv_id, []).append(
            (turn_id, raw, speaker if isinstance(speaker, str) else None)
        )

    def end_ingest(self, conv_id: str) -> None:
        super().end_ingest(conv_id)
        turns = self.turns.pop(conv_id, [])
        for start in range(0, len(turns), CHUNK):
            chunk = turns[start : start + CHUNK]
            stored = self.vault.remember(
                conv_id,
                [
                    {"role": "user", "content": raw, "metadata": {"speaker": sp} if sp else {}}
                    for _, raw, sp in chunk
                ],
            )
            for message, (turn_id, _, _) in zip(stored, chunk, strict=True):
                self.source[message.message_id] = turn_id
        while self.vault.run_jobs(limit=500, user_id=conv_id).claimed:
            pass
        self.facts += len(self.vault.get_user_facts(conv_id))

    def search(self, conv_id: str, query: str, k: int) -> list[str]:
        out: list[str] = []
        for hit in self.vault.search(conv_id, query, k=min(100, 2 * k)):
            m = hit.memory
            if m.memory_type == "fact":
                ids = [self.source[s] for s in m.metadata.get("sources", []) if s in self.source]
                ids = [i for i in ids if i not in out]
                if SOURCES == "first":
                    ids = ids[:1]
                elif SOURCES == "last":
                    ids = ids[-1:]
            else:
                ids = [str(m.metadata["turn_id"])]
            for turn_id in ids:
                if turn_id not in out:
                    out.append(turn_id)
        return out[:k]


def make() -> FactsRetriever:
    return FactsRetriever()
