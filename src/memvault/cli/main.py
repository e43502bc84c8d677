"""The `memvault` command line (typer + rich). A door: it parses, calls the service, prints."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from memvault import __version__
from memvault.client import MemVault
from memvault.config import Settings, load_settings
from memvault.errors import ConfigurationError, ErrorCode, MemvaultError
from memvault.models import Memory, content_text
from memvault.service import admin

app = typer.Typer(
    name="memvault",
    help="Long-term memory for AI assistants and agents.",
    no_args_is_help=True,
    add_completion=False,
    # Docstrings are wrapped at 100 columns: markdown mode joins a paragraph's lines
    # (the default kept each line break, and the help came out ragged).
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="Schema and migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.INTERNAL: 1,
    ErrorCode.INVALID_ARGUMENT: 2,
    ErrorCode.NOT_FOUND: 3,
    ErrorCode.CONFLICT: 4,
    ErrorCode.PAYLOAD_TOO_LARGE: 5,
    ErrorCode.UNAVAILABLE: 6,
    ErrorCode.UNAUTHENTICATED: 7,
    ErrorCode.PERMISSION_DENIED: 7,
    ErrorCode.RATE_LIMITED: 8,
}
CONFIG_EXIT = 9

_overrides: dict[str, Any] = {}


@app.callback()
def _root(
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL (default: MEMVAULT_DATABASE_URL or a "
            "SQLite file in the data directory)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (MEMVAULT_DATA_DIR).")
    ] = None,
) -> None:
    _overrides.clear()
    if database_url:
        _overrides["database_url"] = database_url
    if data_dir:
        _overrides["data_dir"] = data_dir


def fail(code: ErrorCode, message: str) -> NoReturn:
    """Print `error: CODE: message` on stderr and exit with the code's status."""
    err.print(f"[red]error[/red]: {code.value}: {message}", highlight=False, markup=True)
    raise typer.Exit(EXIT_CODES[code])


@contextmanager
def _vault() -> Iterator[MemVault]:
    settings = _settings()
    logging.basicConfig(level=settings.log_level)
    try:
        vault = MemVault(settings)
    except ConfigurationError as exc:
        err.print(f"error: configuration: {exc}", highlight=False, markup=False)
        raise typer.Exit(CONFIG_EXIT) from None
    except MemvaultError as exc:
        fail(exc.code, exc.message)
    try:
        yield vault
    except MemvaultError as exc:
        fail(exc.code, exc.message)
    finally:
        vault.close()


def _settings() -> Settings:
    try:
        return load_settings(_overrides)
    except ConfigurationError as exc:
        err.print(f"error: configuration: {exc}", highlight=False, markup=False)
        raise typer.Exit(CONFIG_EXIT) from None


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str, ensure_ascii=False))


def _memory_table(
    rows: list[Memory], title: str, extra: Callable[[Memory], str] | None = None
) -> Table:
    table = Table(title=title, show_lines=False)
    for name in ("memory_id", "namespace", "type", "importance", "tags", "content"):
        table.add_column(name, overflow="fold")
    if extra is not None:
        table.add_column("score")
    for m in rows:
        cells = [
            m.memory_id,
            m.namespace,
            m.memory_type,
            f"{m.importance:.2f}",
            ", ".join(m.tags),
            m.text[:120],
        ]
        if extra is not None:
            cells.append(extra(m))
        table.add_row(*cells)
    return table


def _dump(m: Memory) -> dict[str, Any]:
    return m.model_dump(mode="json")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# ---------------------------------------------------------------------------- memories
@app.command()
def add(
    user: str,
    content: str,
    namespace: Annotated[str | None, typer.Option(help="Namespace (default: default).")] = None,
    key: Annotated[str | None, typer.Option(help="Key, unique per user and namespace.")] = None,
    memory_type: Annotated[str | None, typer.Option("--type", help="Memory type.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
    importance: Annotated[
        float | None, typer.Option(help="0 to 1 (default: derived from type and content).")
    ] = None,
    ttl: Annotated[int | None, typer.Option(help="Expire after this many seconds.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a memory."""
    with _vault() as vault:
        m = vault.add(
            user,
            content,
            namespace=namespace,
            key=key,
            memory_type=memory_type,
            tags=tag or [],
            importance=importance,
            ttl_seconds=ttl,
        )
    _print_json(_dump(m)) if as_json else out.print(m.memory_id)


@app.command()
def get(user: str, memory_id: str) -> None:
    """Print one memory as JSON."""
    with _vault() as vault:
        _print_json(_dump(vault.get(user, memory_id)))


@app.command("list")
def list_cmd(
    user: str,
    namespace: Annotated[list[str] | None, typer.Option(help="Namespace (repeatable).")] = None,
    memory_type: Annotated[
        list[str] | None, typer.Option("--type", help="Type (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Has any of these tags.")] = None,
    order: Annotated[
        str, typer.Option(help="created_desc, created_asc, importance_desc, updated_desc.")
    ] = "created_desc",
    limit: Annotated[int, typer.Option(help="Rows per page (1-1000).")] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a user's live memories."""
    filters: dict[str, Any] = {}
    if namespace:
        filters["namespaces"] = namespace
    if memory_type:
        filters["memory_types"] = memory_type
    if tag:
        filters["tags_any"] = tag
    with _vault() as vault:
        page = vault.list_memories(user, filters=filters, order=order, limit=limit, cursor=cursor)
    if as_json:
        _print_json({"items": [_dump(m) for m in page.items], "next_cursor": page.next_cursor})
        return
    out.print(_memory_table(page.items, f"memories of {user}"))
    if page.next_cursor:
        out.print(f"next page: --cursor {page.next_cursor}", highlight=False)


@app.command()
def update(
    user: str,
    memory_id: str,
    content: Annotated[str | None, typer.Option(help="New content.")] = None,
    importance: Annotated[float | None, typer.Option(help="New importance.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Replace the tags (repeatable).")] = None,
    if_version: Annotated[int | None, typer.Option(help="Only if still at this version.")] = None,
) -> None:
    """Change a memory's content, importance or tags."""
    fields: dict[str, Any] = {}
    if content is not None:
        fields["content"] = content
    if importance is not None:
        fields["importance"] = importance
    if tag is not None:
        fields["tags"] = tag
    with _vault() as vault:
        m = vault.update(user, memory_id, fields, expected_version=if_version)
    out.print(f"{m.memory_id} is at version {m.version}", highlight=False)


@app.command()
def delete(user: str, memory_id: str) -> None:
    """Soft-delete a memory (restorable until purged)."""
    with _vault() as vault:
        vault.delete(user, memory_id)
    out.print(f"deleted {memory_id}", highlight=False)


@app.command()
def restore(user: str, memory_id: str) -> None:
    """Restore a soft-deleted memory."""
    with _vault() as vault:
        vault.restore(user, memory_id)
    out.print(f"restored {memory_id}", highlight=False)


@app.command()
def history(user: str, memory_id: str, as_json: JsonOpt = False) -> None:
    """Every change of a memory."""
    with _vault() as vault:
        entries = vault.history(user, memory_id)
    if as_json:
        _print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title=f"history of {memory_id}")
    for name in ("version", "operation", "changed_at", "actor", "reason", "content"):
        table.add_column(name, overflow="fold")
    for e in entries:
        content = e.snapshot.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        table.add_row(
            str(e.version),
            e.operation,
            e.changed_at.isoformat(),
            e.actor or "",
            e.reason or "",
            text[:100],
        )
    out.print(table)


@app.command()
def revert(user: str, memory_id: str, version: int) -> None:
    """Make a memory look as it did at VERSION (as a new version)."""
    with _vault() as vault:
        m = vault.revert(user, memory_id, version)
    out.print(
        f"{m.memory_id} reverted to version {version}; now at version {m.version}", highlight=False
    )


@app.command()
def search(
    user: str,
    query: str,
    k: Annotated[int, typer.Option("-k", help="How many results (1-100).")] = 10,
    mode: Annotated[
        str, typer.Option(help="hybrid (default), lexical (no model) or vector.")
    ] = "hybrid",
    memory_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only these memory types.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Only memories with any of these tags.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="What held at this time (ISO 8601 with an offset), not what holds now."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Search a user's memories; the table shows why each one ranked."""
    with _vault() as vault:
        hits = vault.search(
            user,
            query,
            k=k,
            mode=mode,  # type: ignore[arg-type]  # checked by the service
            memory_types=memory_type,
            tags=tag,
            filters=None if as_of is None else {"as_of": as_of},
            explain=True,
        )
    if as_json:
        _print_json(
            [{"score": h.score, "explain": h.explain, "memory": _dump(h.memory)} for h in hits]
        )
        return
    table = Table(title=f"{user}: {query}", show_lines=False)
    for col in ("score", "lexical", "vector", "memory_id", "type", "content"):
        table.add_column(col, overflow="fold" if col == "content" else "ellipsis")
    for h in hits:
        parts = h.explain or {}
        table.add_row(
            f"{h.score:.3f}",
            f"{parts.get('lexical', 0.0):.2f}",
            f"{parts.get('vector', 0.0):.2f}",
            h.memory.memory_id,
            h.memory.memory_type,
            content_text(h.memory.content),
        )
    out.print(table)


@app.command()
def reindex(
    missing: Annotated[
        bool, typer.Option("--missing", help="Only memories without a vector.")
    ] = False,
    lexical: Annotated[
        bool, typer.Option("--lexical", help="Also rebuild the full-text index.")
    ] = False,
    user: Annotated[str | None, typer.Option(help="Only this user's memories.")] = None,
    batch: Annotated[int, typer.Option(help="Texts per embedding batch.")] = 256,
) -> None:
    """Embed memories with the configured embedder (after switching embedders, or to fill
    vectors of writes made while the embedder was down). Resumable: run it again."""
    with _vault() as vault, Progress(transient=True, console=out) as progress:
        task = progress.add_task("embedding", total=None)

        def step(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = vault.reindex(
            missing=missing, lexical=lexical, user_id=user, batch=batch, progress=step
        )
    note = " (the embedder changed: old vectors dropped)" if report.switched else ""
    out.print(
        f"embedded {report.embedded} memories with {report.model or 'no embedder'}{note}"
        + (f"; full-text index rebuilt over {report.lexical_rows} rows" if lexical else ""),
        highlight=False,
    )


@app.command()
def users(limit: Annotated[int, typer.Option(help="At most this many.")] = 100) -> None:
    """List users."""
    with _vault() as vault:
        rows = vault.list_users(limit=limit)
        counts = {u.user_id: vault.count(u.user_id) for u in rows}
    table = Table(title="users")
    for name in ("user_id", "username", "memories", "created_at"):
        table.add_column(name)
    for u in rows:
        table.add_row(u.user_id, u.username or "", str(counts[u.user_id]), u.created_at.isoformat())
    out.print(table)


@app.command()
def purge(
    user: Annotated[
        str | None, typer.Option(help="Erase everything this user owns instead.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (with --user).")] = False,
) -> None:
    """Hard-delete expired memories and those deleted longer ago than the retention period."""
    with _vault() as vault:
        if user is not None:
            if not yes and not typer.confirm(f"Erase every record of user {user!r}?"):
                fail(ErrorCode.INVALID_ARGUMENT, "not confirmed; nothing was erased")
            counts = vault.erase_user(user, actor="cli")
            out.print(
                f"erased user {user}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
                highlight=False,
            )
            return
        done = vault.purge()
        vault.record_audit(
            "purge", actor="cli", details={"expired": done.expired, "deleted": done.deleted}
        )
    out.print(f"purged {done.expired} expired and {done.deleted} deleted memories", highlight=False)


@app.command()
def demo() -> None:
    """Store, list and search a few memories of the user `demo` in the configured database."""
    samples = [
        ("drink", "I prefer green tea when I am working late", ["preference", "drinks"], 0.7),
        ("allergy", "I am allergic to peanuts, never suggest recipes with them", ["health"], 0.95),
        ("sister", "My sister Dana lives in Lisbon and works as a pilot", ["family"], 0.6),
        ("goal", "This year my main goal is to run a half marathon by May", ["goals"], 0.8),
    ]
    with _vault() as vault:
        for key, text, tags, importance in samples:
            vault.upsert("demo", "default", key, text, tags=tags, importance=importance)
        vault.add_user_fact("demo", "Lives in Toronto", "location")
        page = vault.list_memories("demo", order="importance_desc")
        out.print(_memory_table(page.items, "memories of demo, most important first"))
        for query in ("what should I avoid cooking?", "where does my sister live"):
            hits = vault.search("demo", query, k=3)
            scores = {h.memory.memory_id: h.score for h in hits}
            out.print(
                _memory_table(
                    [h.memory for h in hits],
                    f"search: {query}",
                    lambda m, scores=scores: f"{scores[m.memory_id]:.3f}",  # type: ignore[misc]
                )
            )
        out.print(f"database: {vault.settings.database_url}", highlight=False)


@app.command()
def version() -> None:
    """Print memvault's version."""
    out.print(f"memvault {__version__}", highlight=False)


# ---------------------------------------------------------------------------- db
@app.command("migrate")
def migrate_store(
    source: Annotated[str, typer.Option("--from", help="URL of the store to copy.")],
    target: Annotated[str, typer.Option("--to", help="URL of an empty store to fill.")],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted copy into --to.")
    ] = False,
    batch: Annotated[int, typer.Option(help="Rows per transaction (1-100000).")] = 1000,
) -> None:
    """Copy everything between two backends (SQLite <-> PostgreSQL), then verify row counts
    and checksums. Resumable with --resume."""
    settings = _settings()
    with Progress(console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def step(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done, total=total)

        try:
            report = admin.transfer_store(
                settings, source, target, resume=resume, batch=batch, progress=step
            )
        except ConfigurationError as exc:
            err.print(f"error: configuration: {exc}", highlight=False, markup=False)
            raise typer.Exit(CONFIG_EXIT) from None
        except MemvaultError as exc:
            fail(exc.code, exc.message)
    table = Table(title=f"{source} -> {target}")
    for name in ("table", "copied", "rows", "verified"):
        table.add_column(name)
    for t in report.tables:
        table.add_row(t.table, str(t.copied), f"{t.target_rows}/{t.source_rows}", str(t.verified))
    out.print(table)
    if not report.verified:
        fail(
            ErrorCode.CONFLICT,
            "the copy differs from the source (was the source written to meanwhile?)",
        )
    out.print(f"copied {report.copied} rows; counts and checksums match", highlight=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Migrate the configured database to the newest schema."""
    settings = _settings()
    try:
        at = admin.upgrade_database(settings, revision)
    except MemvaultError as exc:
        fail(exc.code, exc.message)
    out.print(f"{settings.database_url}: at revision {at}", highlight=False)


@db_app.command("current")
def db_current() -> None:
    """Print the configured database's schema revision."""
    out.print(admin.current_revision(_settings()) or "empty", highlight=False)


@db_app.command("sql")
def db_sql(
    dialect: Annotated[str, typer.Option(help="sqlite or postgresql.")] = "sqlite",
) -> None:
    """Print the DDL of every migration, for a DBA who runs SQL by hand."""
    if dialect not in ("sqlite", "postgresql"):
        fail(ErrorCode.INVALID_ARGUMENT, f"--dialect must be sqlite or postgresql, got {dialect!r}")
    sys.stdout.write(admin.schema_sql(dialect))


def main() -> None:
    """Entry point of the `memvault` command."""
    app()


# Registers `serve` and `keys` on `app` (that module imports this one's helpers).
from memvault.cli import export as _export  # noqa: E402, F401
from memvault.cli import jobs as _jobs  # noqa: E402, F401
from memvault.cli import mcp as _mcp  # noqa: E402, F401
from memvault.cli import orchestrator as _orchestrator  # noqa: E402, F401
from memvault.cli import serve as _serve  # noqa: E402, F401
