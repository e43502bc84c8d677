"""Seed 002's names, backed by memvault: `initialize`, `get_memory_store`, `MemoryStore`.

```python
from memvault.memory_management import initialize, get_memory_store

initialize({"MAX_MESSAGES": 100, "DATA_DIR": "/custom/path/to/data"})
memory = get_memory_store()
memory.get_or_create_user("user123", "JohnDoe")
memory.add_message("user123", "user", "Hello, Elysia!")
```

Results are plain dicts and lists, as the JSON store returned; `docs/migrate-from-seed-002.md`
lists every call and its shape.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

from memvault.client import MemVault
from memvault.config import Settings, load_settings
from memvault.models import Memory, Message, Metrics, User
from memvault.seed_records import is_seed002_dir


class MemoryStore(ABC):
    """The interface seed 002's stores implement."""

    @abstractmethod
    def get_or_create_user(self, user_id: str, username: str | None = None) -> dict[str, Any]: ...
    @abstractmethod
    def get_user_profile(self, user_id: str) -> dict[str, Any] | None: ...
    @abstractmethod
    def update_user_profile(self, user_id: str, updates: dict[str, Any]) -> dict[str, Any]: ...
    @abstractmethod
    def get_all_users(self) -> list[str]: ...
    @abstractmethod
    def add_message(self, user_id: str, role: str, content: str) -> dict[str, Any]: ...
    @abstractmethod
    def get_message_history(
        self, user_id: str, limit: int | None = None
    ) -> list[dict[str, Any]]: ...
    @abstractmethod
    def clear_message_history(self, user_id: str) -> int: ...
    @abstractmethod
    def add_user_fact(
        self, user_id: str, fact: str, category: str = "general"
    ) -> dict[str, Any]: ...
    @abstractmethod
    def get_user_facts(self, user_id: str, category: str | None = None) -> list[dict[str, Any]]: ...
    @abstractmethod
    def update_streak(self, user_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def get_metrics(self, user_id: str) -> dict[str, Any]: ...
    @abstractmethod
    def update_metrics(self, user_id: str, metric: str, value: int = 1) -> dict[str, Any]: ...
    @abstractmethod
    def get_global_context(self) -> dict[str, Any]: ...
    @abstractmethod
    def update_global_context(self, key: str, value: Any) -> dict[str, Any]: ...
    @abstractmethod
    def add_permanent_memory(self, user_id: str, content: str, **fields: Any) -> dict[str, Any]: ...
    @abstractmethod
    def get_permanent_memories(self, user_id: str) -> list[dict[str, Any]]: ...


def _user(u: User) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "username": u.username,
        "created_at": u.created_at.isoformat(),
        "updated_at": u.updated_at.isoformat(),
        "timezone": u.timezone,
        **u.profile,
    }


def _message(m: Message) -> dict[str, Any]:
    return {
        "id": m.message_id,
        "role": m.role,
        "content": m.content,
        "timestamp": m.created_at.isoformat(),
    }


def _fact(m: Memory) -> dict[str, Any]:
    return {
        "id": m.memory_id,
        "fact": m.text,
        "category": m.category,
        "timestamp": m.created_at.isoformat(),
        "importance": m.importance,
    }


def _permanent(m: Memory) -> dict[str, Any]:
    return {
        "id": m.memory_id,
        "content": m.content,
        "tags": m.tags,
        "timestamp": m.created_at.isoformat(),
    }


def _metrics(m: Metrics) -> dict[str, Any]:
    return {
        "total_messages": m.total_messages,
        "messages_by_role": m.messages_by_role,
        **m.counters,
        "first_interaction": None
        if m.first_interaction_at is None
        else m.first_interaction_at.isoformat(),
        "last_interaction": None
        if m.last_interaction_at is None
        else m.last_interaction_at.isoformat(),
        "current_streak": m.current_streak,
        "longest_streak": m.longest_streak,
        "last_active_date": None if m.last_active_date is None else m.last_active_date.isoformat(),
    }


class SqlMemoryStore(MemoryStore):
    """Seed 002's store API over a memvault database (SQLite by default)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.vault = MemVault(settings)

    def close(self) -> None:
        self.vault.close()

    def get_or_create_user(self, user_id: str, username: str | None = None) -> dict[str, Any]:
        return _user(self.vault.get_or_create_user(user_id, username))

    def get_user_profile(self, user_id: str) -> dict[str, Any] | None:
        from memvault.errors import NotFoundError

        try:
            return _user(self.vault.get_user(user_id))
        except NotFoundError:
            return None

    def update_user_profile(self, user_id: str, updates: dict[str, Any]) -> dict[str, Any]:
        self.vault.get_or_create_user(user_id)
        fields = dict(updates)
        username = fields.pop("username", None)
        timezone = fields.pop("timezone", None)
        return _user(
            self.vault.update_user(
                user_id, username=username, timezone=timezone, profile=fields or None
            )
        )

    def get_all_users(self) -> list[str]:
        out: list[str] = []
        after = None
        while True:
            page = self.vault.list_users(limit=1000, after=after)
            out.extend(u.user_id for u in page)
            if len(page) < 1000:
                return out
            after = page[-1].user_id

    def add_message(self, user_id: str, role: str, content: str) -> dict[str, Any]:
        return _message(self.vault.add_message(user_id, role, content))

    def get_message_history(self, user_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        return [_message(m) for m in self.vault.get_message_history(user_id, limit=limit)]

    def clear_message_history(self, user_id: str) -> int:
        return self.vault.clear_message_history(user_id)

    def add_user_fact(self, user_id: str, fact: str, category: str = "general") -> dict[str, Any]:
        return _fact(self.vault.add_user_fact(user_id, fact, category))

    def get_user_facts(self, user_id: str, category: str | None = None) -> list[dict[str, Any]]:
        return [_fact(m) for m in self.vault.get_user_facts(user_id, category)]

    def update_streak(self, user_id: str) -> dict[str, Any]:
        m = self.vault.update_streak(user_id)
        return {
            "current_streak": m.current_streak,
            "longest_streak": m.longest_streak,
            "last_active_date": None
            if m.last_active_date is None
            else m.last_active_date.isoformat(),
        }

    def get_metrics(self, user_id: str) -> dict[str, Any]:
        return _metrics(self.vault.get_metrics(user_id))

    def update_metrics(self, user_id: str, metric: str, value: int = 1) -> dict[str, Any]:
        return _metrics(self.vault.increment_metric(user_id, metric, value))

    def get_global_context(self) -> dict[str, Any]:
        return self.vault.get_global_context()

    def update_global_context(self, key: str, value: Any) -> dict[str, Any]:
        self.vault.set_global_context(key, value)
        return self.vault.get_global_context()

    def add_permanent_memory(self, user_id: str, content: str, **fields: Any) -> dict[str, Any]:
        return _permanent(self.vault.add_permanent_memory(user_id, content, **fields))

    def get_permanent_memories(self, user_id: str) -> list[dict[str, Any]]:
        return [_permanent(m) for m in self.vault.get_permanent_memories(user_id)]


_lock = threading.Lock()
_config: dict[str, Any] = {}
_store: SqlMemoryStore | None = None


def settings_for(config: dict[str, Any] | None = None) -> Settings:
    """The settings of `config`; a `DATA_DIR` that already holds seed 002's JSON files (and
    no database URL given) is opened in place, as the JSON-file backend."""
    settings = load_settings(config)
    if "database_url" in settings.model_fields_set:
        return settings
    data = settings.data_dir
    if is_seed002_dir(data) and not (data / "memvault.db").exists():
        return settings.model_copy(update={"database_url": f"jsonfs://{data.resolve()}"})
    return settings


def create_memory_store(config: dict[str, Any] | None = None) -> SqlMemoryStore:
    """The factory (seed 002's `memory_store_factory`): a new store for `config`."""
    return SqlMemoryStore(settings_for(config))


def initialize(config: dict[str, Any] | None = None) -> None:
    """Set the configuration (`MAX_MESSAGES`, `DATA_DIR`, `DATABASE_URL`, or any memvault
    setting) that `get_memory_store` uses; closes a store opened with an older one."""
    global _store, _config
    settings = settings_for(config)  # fail now on a bad value, not on first use
    with _lock:
        if _store is not None:
            _store.close()
        _config = dict(config or {})
        _store = SqlMemoryStore(settings)


def get_memory_store() -> SqlMemoryStore:
    """The shared store (opened with the environment's settings when `initialize` was not
    called)."""
    global _store
    with _lock:
        if _store is None:
            _store = SqlMemoryStore(settings_for(_config))
        return _store
