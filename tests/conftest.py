"""Shared fixtures: settings on a fresh SQLite file, a frozen clock, vaults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memvault import AsyncMemVault, FrozenClock, MemVault, Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'mv.db'}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def vault(settings: Settings, clock: FrozenClock) -> Iterator[MemVault]:
    v = MemVault(settings, clock=clock)
    yield v
    v.close()


@pytest.fixture
async def avault(settings: Settings, clock: FrozenClock) -> AsyncIterator[AsyncMemVault]:
    v = await AsyncMemVault.open(settings, clock=clock)
    yield v
    await v.close()
