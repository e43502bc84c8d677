"""Any sentence-transformers model from a local directory (extra: `memvault[st]`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memvault.embed import Vectors, normalise
from memvault.errors import ConfigurationError


class SentenceTransformerEmbedder:
    """Loads the model directory on first use, offline (nothing is fetched from a hub)."""

    def __init__(self, path: str, *, batch_size: int = 32) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigurationError(f"no sentence-transformers model directory at {path!r}")
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import os

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ConfigurationError(
                        "embedder st:... needs the extra: pip install 'memvault[st]'"
                    ) from exc
                self._model = SentenceTransformer(str(self.path), device="cpu")
            return self._model

    @property
    def name(self) -> str:
        return f"st:{self.path.name}"

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None)  # newer releases' name
        if getter is None:
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = self._load().encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalise(out)

    def close(self) -> None:
        self._model = None
