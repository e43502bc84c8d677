"""Random operation sequences keep the store equal to a simple in-memory model, TTL with a
frozen clock included."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from memvault import ConflictError, FrozenClock, MemVault, NotFoundError, Settings

USERS = st.sampled_from(["u1", "u2"])
KEYS = st.sampled_from(["a", "b", "c", None])
TEXT = st.text(alphabet="abcdefgh ", min_size=1, max_size=12).filter(lambda s: s.strip() != "")


@dataclass(frozen=True)
class Row:
    user: str
    key: str
    content: str
    version: int
    expires_at: datetime | None
    deleted: bool = False


class StoreModel(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name)
        self.clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
        self.vault = MemVault(
            Settings(data_dir=path, database_url=f"sqlite:///{path / 'm.db'}"), clock=self.clock
        )
        self.rows: dict[str, Row] = {}

    def teardown(self) -> None:
        self.vault.close()
        self.dir.cleanup()

    def _live(self, r: Row) -> bool:
        return not r.deleted and (r.expires_at is None or r.expires_at > self.clock.now())

    def _key_taken(self, user: str, key: str) -> bool:
        return any(r.user == user and r.key == key and self._live(r) for r in self.rows.values())

    @rule(target=ids, user=USERS, key=KEYS, content=TEXT, ttl=st.none() | st.integers(1, 100))
    def add(self, user: str, key: str | None, content: str, ttl: int | None) -> str:
        if key is not None and self._key_taken(user, key):
            try:
                self.vault.add(user, content, key=key, ttl_seconds=ttl)
            except ConflictError:
                return "mem_00000000000000000000000000"
            raise AssertionError("expected a conflict")
        m = self.vault.add(user, content, key=key, ttl_seconds=ttl)
        for mid, r in list(self.rows.items()):  # an expired holder of the key is retired
            if key is not None and r.user == user and r.key == key and not r.deleted:
                self.rows[mid] = replace(r, deleted=True, version=r.version + 1)
        self.rows[m.memory_id] = Row(user, m.key, content, 1, m.expires_at)
        return m.memory_id

    @rule(mid=ids, user=USERS, content=TEXT)
    def update(self, mid: str, user: str, content: str) -> None:
        r = self.rows.get(mid)
        if r is None or r.user != user or not self._live(r):
            try:
                self.vault.update(user, mid, content=content)
            except NotFoundError:
                return
            raise AssertionError("expected not found")
        m = self.vault.update(user, mid, content=content)
        version = r.version if content == r.content else r.version + 1
        assert m.version == version
        self.rows[mid] = replace(r, content=content, version=version)

    @rule(mid=ids, user=USERS)
    def delete(self, mid: str, user: str) -> None:
        r = self.rows.get(mid)
        if r is None or r.user != user or not self._live(r):
            try:
                self.vault.delete(user, mid)
            except NotFoundError:
                return
            raise AssertionError("expected not found")
        self.vault.delete(user, mid)
        self.rows[mid] = replace(r, deleted=True, version=r.version + 1)

    @rule(mid=ids, user=USERS)
    def restore(self, mid: str, user: str) -> None:
        r = self.rows.get(mid)
        expired = r is not None and r.expires_at is not None and r.expires_at <= self.clock.now()
        if r is None or r.user != user or expired:
            try:
                self.vault.restore(user, mid)
            except NotFoundError:
                return
            raise AssertionError("expected not found")
        if not r.deleted or self._key_taken(user, r.key):
            try:
                self.vault.restore(user, mid)
            except ConflictError:
                return
            raise AssertionError("expected a conflict")
        self.vault.restore(user, mid)
        self.rows[mid] = replace(r, deleted=False, version=r.version + 1)

    @rule(seconds=st.integers(1, 60))
    def tick(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def purge(self) -> None:
        self.vault.purge()
        now = self.clock.now()
        for mid, r in list(self.rows.items()):
            if r.expires_at is not None and r.expires_at <= now:
                del self.rows[mid]

    @invariant()
    def same_live_memories(self) -> None:
        for user in ("u1", "u2"):
            want = {
                mid: (r.content, r.version)
                for mid, r in self.rows.items()
                if r.user == user and self._live(r)
            }
            try:
                items = self.vault.list_memories(user, limit=1000).items
            except NotFoundError:
                items = []
            assert {m.memory_id: (m.content, m.version) for m in items} == want
            assert self.vault.count(user) == len(want)


StoreModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_store_matches_model = StoreModel.TestCase
