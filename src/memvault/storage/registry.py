"""URL scheme -> backend factory, imported on first use.

Other packages add schemes through the entry-point group `memvault.backends` (the entry
point names the scheme and points at a factory `(url, settings, *, threaded) -> Backend`);
a scheme registered twice raises `ConfigurationError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, cast

from memvault.config import Settings
from memvault.errors import ConfigurationError
from memvault.storage.base import Backend

Factory = Callable[..., Backend]

_BUILTIN = {
    "sqlite": "memvault.storage.registry:open_sqlite",
    "postgresql": "memvault.storage.registry:open_postgres",
    "postgres": "memvault.storage.registry:open_postgres",
    "jsonfs": "memvault.storage.registry:open_jsonfs",
}


def open_sqlite(url: str, settings: Settings, *, threaded: bool) -> Backend:
    from memvault.storage.sqlite import SqliteBackend, sqlite_path

    try:
        path = sqlite_path(url)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return cast(Backend, SqliteBackend(path, settings, threaded=threaded))


def open_jsonfs(url: str, settings: Settings, *, threaded: bool) -> Backend:
    from memvault.storage.jsonfs import JsonfsBackend, jsonfs_path

    try:
        path = jsonfs_path(url)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return cast(Backend, JsonfsBackend(path, settings, threaded=threaded))


def open_postgres(url: str, settings: Settings, *, threaded: bool) -> Backend:
    try:
        from memvault.storage.postgres import PostgresBackend
    except ImportError as exc:  # psycopg is a dependency; a broken install says so
        raise ConfigurationError(f"the PostgreSQL backend cannot load: {exc}") from exc
    return cast(Backend, PostgresBackend(url, settings, threaded=threaded))


def schemes() -> dict[str, str]:
    """Every known scheme and the dotted path of its factory."""
    table = dict(_BUILTIN)
    for ep in entry_points(group="memvault.backends"):
        if ep.name in table:
            raise ConfigurationError(
                f"backend scheme {ep.name!r} is registered twice ({table[ep.name]} and {ep.value})"
            )
        table[ep.name] = ep.value
    return table


def scheme_of(url: str) -> str:
    head = url.split(":", 1)[0].lower()
    return head.split("+", 1)[0]


def open_backend(url: str, settings: Settings, *, threaded: bool) -> Backend:
    """Open the backend that `url` names."""
    scheme = scheme_of(url)
    table = schemes()
    if scheme not in table:
        raise ConfigurationError(
            f"no memvault backend for {scheme!r} URLs; known schemes: {sorted(table)}"
        )
    module, _, attr = table[scheme].partition(":")
    factory: Any = getattr(importlib.import_module(module), attr)
    return cast(Backend, factory(url, settings, threaded=threaded))
