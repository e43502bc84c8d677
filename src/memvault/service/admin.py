"""Opening storage and managing its schema, for the doors (which never import storage)."""

from __future__ import annotations

from memvault.config import Settings
from memvault.errors import UnavailableError
from memvault.storage import migrate
from memvault.storage.registry import open_backend
from memvault.storage.runner import drive
from memvault.storage.sqlite import prepare_database, sqlite_path

__all__ = ["current_revision", "drive", "open_backend", "schema_sql", "upgrade_database"]


def upgrade_database(settings: Settings, revision: str = "head") -> str | None:
    """Migrate the configured database; returns the revision it is at afterwards.

    Raises:
        UnavailableError: the database cannot be reached or the migration failed.
    """
    url = settings.database_url
    try:
        if url.startswith("sqlite:") and revision == "head":
            prepare_database(sqlite_path(url))
        else:
            migrate.upgrade(url, revision)
        return migrate.current_revision(url)
    except Exception as exc:
        raise UnavailableError(f"migration of {url} failed: {exc}") from exc


def current_revision(settings: Settings) -> str | None:
    return migrate.current_revision(settings.database_url)


def schema_sql(dialect: str) -> str:
    """The DDL of every revision for `dialect` (sqlite or postgresql)."""
    return migrate.offline_sql(dialect)
