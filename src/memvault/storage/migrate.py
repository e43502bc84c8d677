"""Running alembic: upgrade a database, read its revision, print the DDL for a DBA.

alembic is imported by the functions that run it, not with this module: opening a store
already at `HEAD_REVISION` never needs it, and importing it (with mako and pygments) was
about 235 ms and 40% of `import memvault`'s objects.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, pool

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0013"
"""The newest revision; a test checks it against the revision files."""

_HERE = Path(__file__).parent / "migrations"


def engine_url(url: str) -> str:
    """The URL SQLAlchemy opens: PostgreSQL URLs (`postgresql://`, `postgres://`,
    `postgresql+asyncpg://`) go through the psycopg 3 driver memvault ships with."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0].lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def alembic_config(url: str, output: io.StringIO | None = None) -> Config:
    from alembic.config import Config

    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("sqlalchemy.url", engine_url(url).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    return str(head)


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (default: the newest)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(engine_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            return None if rev is None else str(rev)
    finally:
        engine.dispose()


def offline_sql(dialect: str, revision: str = "head") -> str:
    """The DDL that brings an empty `dialect` database to `revision`, as SQL text."""
    urls = {"sqlite": "sqlite://", "postgresql": "postgresql://"}
    if dialect not in urls:
        raise ValueError(f"dialect must be one of {sorted(urls)}, got {dialect!r}")
    from alembic import command

    out = io.StringIO()
    command.upgrade(alembic_config(urls[dialect], out), revision, sql=True)
    return out.getvalue()
