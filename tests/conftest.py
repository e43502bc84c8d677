"""Shared fixtures: settings on a fresh store of each backend, a frozen clock, vaults.

A test that asks for `settings` (or `vault`, `avault`) runs once per backend: on a SQLite file
under `tmp_path`, on PostgreSQL (a database made for this run, emptied before each test) and
on JSON files under `tmp_path`.
A module narrows that with `BACKENDS = ("sqlite",)` when what it checks is one backend's own
(and says why). PostgreSQL tests carry the `postgres` marker; when the server cannot be
reached they fail with the URL they tried (`-m "not postgres"` leaves them out on purpose).
With `MEMVAULT_REQUIRE_POSTGRES=1` (CI) a run where no PostgreSQL test ran fails too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memvault import AsyncMemVault, FrozenClock, MemVault, Settings

ALL_BACKENDS = ("sqlite", "postgres", "jsonfs")
ADMIN_URL = os.environ.get(
    "MEMVAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_TABLES = (
    "users, memories, memory_history, messages, sessions, summaries, user_metrics, "
    "memory_vectors, vector_index, global_context, api_keys, audit_log, jobs, encryption_check"
)
_ran_postgres = False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        wanted = getattr(metafunc.module, "BACKENDS", ALL_BACKENDS)
        metafunc.parametrize(
            "backend",
            [pytest.param(b, marks=pytest.mark.postgres) if b == "postgres" else b for b in wanted],
            scope="function",
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _ran_postgres
    if item.get_closest_marker("postgres") is not None:
        _ran_postgres = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (
        os.environ.get("MEMVAULT_REQUIRE_POSTGRES") == "1"
        and not _ran_postgres
        and session.testscollected
        and exitstatus == 0
    ):
        session.exitstatus = 1
        print("\nMEMVAULT_REQUIRE_POSTGRES=1 but no PostgreSQL test ran")


class PostgresDatabase:
    """One database for this test run on the server at ADMIN_URL."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"memvault_test_{os.getpid()}"
        base, _, _ = ADMIN_URL.rpartition("/")
        self.url = f"{base}/{self.name}"
        try:
            with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
                conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.OperationalError as exc:
            pytest.fail(
                f"PostgreSQL is unreachable at {ADMIN_URL} ({exc}); start it, set "
                'MEMVAULT_TEST_POSTGRES_URL, or leave these tests out with -m "not postgres"'
            )
        self.migrated = False

    def fresh(self) -> str:
        """The database, migrated and emptied."""
        import psycopg

        if not self.migrated:
            from memvault.storage.postgres import prepare_postgres

            prepare_postgres(self.url)
            self.migrated = True
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
        return self.url

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


_pg: PostgresDatabase | None = None


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[PostgresDatabase]:
    global _pg
    if _pg is None:
        _pg = PostgresDatabase()
    yield _pg
    _pg.drop()
    _pg = None


@pytest.fixture
def backend_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgres":
        db: PostgresDatabase = request.getfixturevalue("postgres_db")
        return db.fresh()
    if backend == "jsonfs":
        return f"jsonfs://{tmp_path / 'jsonfs'}"
    return f"sqlite:///{tmp_path / 'mv.db'}"


# A SQLite store that encrypts memory content and metadata (docs/backends.md#encryption):
# modules whose contract holds there too list "sealed" in their BACKENDS.
SEALED_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture
def settings(tmp_path: Path, backend_url: str, backend: str) -> Settings:
    if backend == "sealed":
        return Settings(
            data_dir=tmp_path,
            database_url=backend_url,
            encryption_key=SEALED_KEY,
            encrypt_content=True,
        )
    return Settings(data_dir=tmp_path, database_url=backend_url)


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
