"""Maintenance that must run once at a time across every process on a store."""

from __future__ import annotations

import pytest

from memvault import AsyncMemVault, MemVault, Settings
from memvault.errors import ConflictError


async def test_one_reindex_at_a_time_across_processes(settings: Settings) -> None:
    s = settings.model_copy(update={"embedder": "none"})
    holder = await AsyncMemVault.open(s)
    try:
        async with holder.backend.exclusive("reindex"):
            with MemVault(s) as other, pytest.raises(ConflictError, match="another reindex"):
                other.reindex(lexical=True)
        with MemVault(s) as other:
            other.add("u", "searchable words")
            assert other.reindex(lexical=True).lexical_rows >= 1
    finally:
        await holder.close()
