"""An OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, vLLM, text-embeddings-inference
behind an OpenAI shim, ...) as an embedder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from memvault.embed import Vectors, normalise
from memvault.errors import UnavailableError


class HttpEmbedder:
    """POST `{base_url}/embeddings` with `{"model", "input": [...]}`; read `data[i].embedding`.

    The dimension is the configured one or, when 0, learnt from the first answer. Errors
    (connection refused, timeout, 5xx, malformed body) raise `UnavailableError`: the service
    then stores the memory without a vector and fills it in later.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        dimension: int = 0,
        batch_size: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self._dimension = dimension
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    @property
    def name(self) -> str:
        return f"http:{self.model}"

    @property
    def dimension(self) -> int:
        if not self._dimension:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows += self._post(list(texts[start : start + self.batch_size]))
        if not rows:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        out = normalise(np.array(rows, dtype=np.float32))
        if self._dimension and out.shape[1] != self._dimension:
            raise UnavailableError(
                f"the embedding endpoint returned {out.shape[1]} dimensions, "
                f"expected {self._dimension}"
            )
        self._dimension = int(out.shape[1])
        return out

    def _post(self, batch: list[str]) -> list[list[float]]:
        url = f"{self.base_url}/embeddings"
        try:
            resp = self._client.post(url, json={"model": self.model, "input": batch})
        except httpx.HTTPError as exc:
            raise UnavailableError(f"embedding endpoint {url} unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise UnavailableError(
                f"embedding endpoint {url} answered {resp.status_code}: {resp.text[:200]}"
            )
        try:
            body: Any = resp.json()
            data = sorted(body["data"], key=lambda d: d.get("index", 0))
            rows = [list(map(float, d["embedding"])) for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise UnavailableError(f"embedding endpoint {url} sent a malformed body") from exc
        if len(rows) != len(batch):
            raise UnavailableError(
                f"embedding endpoint {url} returned {len(rows)} vectors for {len(batch)} texts"
            )
        return rows

    def close(self) -> None:
        self._client.close()
