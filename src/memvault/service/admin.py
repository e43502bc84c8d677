"""Opening storage and managing its schema, for the doors (which never import storage)."""

from __future__ import annotations

from collections.abc import Callable

from memvault.config import Settings
from memvault.errors import InvalidArgumentError, UnavailableError
from memvault.storage import migrate
from memvault.storage.registry import open_backend, scheme_of
from memvault.storage.runner import drive
from memvault.storage.sql.backend import SqlBackend
from memvault.storage.sqlite import prepare_database, sqlite_path
from memvault.storage.transfer import Progress, TransferReport, transfer

__all__ = [
    "current_revision",
    "drive",
    "open_backend",
    "schema_sql",
    "transfer_store",
    "upgrade_database",
]


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


def transfer_store(
    settings: Settings,
    source_url: str,
    target_url: str,
    *,
    resume: bool = False,
    batch: int = 1000,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy everything from the store at `source_url` into the one at `target_url` (any
    two SQL backends), then verify counts and checksums (storage/transfer.py)."""
    if source_url == target_url:
        raise InvalidArgumentError("--from and --to name the same store")
    if "jsonfs" in (scheme_of(source_url), scheme_of(target_url)):
        raise InvalidArgumentError(
            "migrate copies between SQLite and PostgreSQL; to or from JSON files, use "
            "`memvault export` and `memvault import`"
        )
    source = open_backend(source_url, settings, threaded=False)
    try:
        target = open_backend(target_url, settings, threaded=False)
        try:
            if not isinstance(source, SqlBackend) or not isinstance(target, SqlBackend):
                raise InvalidArgumentError("migrate copies between SQL backends only")
            drive(source.flush())
            return transfer(source, target, resume=resume, batch=batch, progress=progress)
        finally:
            drive(target.close())
    finally:
        drive(source.close())


def rotate_encryption_key(
    settings: Settings, new_key: str, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Put the store at `settings.database_url` under `new_key` (what is there is read with
    the configured key or old keys): every file of a JSON-file store, or every memory row
    and history snapshot of a SQL store that encrypts memory content (plain rows written
    before it started are sealed too). Returns what was written, by kind.

    Raises:
        InvalidArgumentError: a SQL store that does not encrypt memory content.
        ConflictError: writers kept sealing rows under another key meanwhile.
        ConfigurationError: something does not decrypt with the keys given (nothing of it
            is written).
    """
    from memvault.crypto import Cipher, parse_key
    from memvault.storage.jsonfs import JsonfsBackend

    key = parse_key(new_key, "new encryption key")
    backend = open_backend(settings.database_url, settings, threaded=False)
    try:
        if isinstance(backend, JsonfsBackend):
            return {"files": backend.rotate(Cipher(key))}
        if not isinstance(backend, SqlBackend):
            raise InvalidArgumentError("this backend has no encryption at rest")
        return backend.rotate_columns(key, progress)
    finally:
        drive(backend.close())
