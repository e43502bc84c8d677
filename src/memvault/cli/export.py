"""`memvault export` and `memvault import`: archives of one user or of the whole store
(docs/export.md)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from memvault.cli.main import JsonOpt, _print_json, _settings, _vault, app, err, fail, out
from memvault.errors import ErrorCode
from memvault.service.archive import parse_lines
from memvault.service.export import assemble


@app.command()
def export(
    file: Annotated[
        Path | None,
        typer.Argument(help="Write the archive here (default, or '-': standard output)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only this user (default: everything).")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="jsonl (a line per record) or json (one document; --user)."),
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Same as FILE.")] = None,
) -> None:
    """Export an archive: everything in the store, or everything USER owns (profile,
    memories with their history, deleted and expired ones too, messages, sessions, summary,
    metrics; the whole store adds the global context). `memvault import` reads it back."""
    if fmt not in ("json", "jsonl"):
        fail(ErrorCode.INVALID_ARGUMENT, f"--format must be json or jsonl, got {fmt!r}")
    if fmt == "json" and user is None:
        fail(ErrorCode.INVALID_ARGUMENT, "--format json needs --user (the whole store is jsonl)")
    if file is not None and output is not None:
        fail(ErrorCode.INVALID_ARGUMENT, "give FILE or --output, not both")
    target = output or file
    to_stdout = target is None or str(target) == "-"
    with _vault() as vault:
        exported = vault.export_user(user) if user is not None else vault.export_all()
        records = itertools.chain([next(exported)], exported)  # NOT_FOUND before any output
        stream: TextIO = (
            sys.stdout if to_stdout else target.open("w", encoding="utf-8")  # type: ignore[union-attr]
        )
        try:
            count = _write(records, fmt, stream, progress=not to_stdout)
        finally:
            if not to_stdout:
                stream.close()
    if not to_stdout:
        what = f"of {user}" if user is not None else "of the whole store"
        err.print(f"wrote {count} records {what} to {target}", highlight=False)


def _write(records: Any, fmt: str, stream: TextIO, *, progress: bool) -> int:
    count = 0
    if fmt == "jsonl":
        with Progress(
            TextColumn("exporting"), TextColumn("{task.completed} records"),
            console=err, disable=not progress, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("export", total=None)
            for kind, record in records:
                line = json.dumps({"kind": kind, "record": record}, ensure_ascii=False)
                stream.write(line + "\n")
                count += 1
                if count % 500 == 0:
                    bar.update(task, completed=count)
        return count
    items = list(records)
    json.dump(assemble(items), stream, ensure_ascii=False, indent=2)
    stream.write("\n")
    return len(items)


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="An archive from `memvault export` ('-': stdin).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every line and count, write nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import an archive: records the store lacks are added as they were (ids, versions,
    times, history); records it has are left alone, so importing twice adds nothing."""
    reading_stdin = str(file) == "-"
    if not reading_stdin and not file.is_file():
        fail(ErrorCode.NOT_FOUND, f"no file {file}")
    total = None
    if not reading_stdin:
        with file.open("rb") as f:
            total = max(0, sum(1 for line in f if line.strip()) - 1)  # the header is not a record
    stream = sys.stdin if reading_stdin else file.open(encoding="utf-8")
    try:
        with (
            _vault() as vault,
            Progress(
                TextColumn("checking" if dry_run else "importing"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                transient=True,
                disable=as_json,
            ) as bar,
        ):
            task = bar.add_task("import", total=total)
            report = vault.import_archive(
                parse_lines(stream),
                dry_run=dry_run,
                progress=lambda n: bar.update(task, completed=n),
            )
    finally:
        if not reading_stdin:
            stream.close()
    if as_json:
        _print_json(report.as_dict())
        return
    verb = "would import" if dry_run else "imported"
    out.print(f"{report.records} records ({report.scope} archive); {verb}:", highlight=False)
    for kind, outcomes in report.counts.items():
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        out.print(f"  {kind}: {parts}", highlight=False)
    if report.embedded:
        out.print(f"  vectors computed for {report.embedded} memories", highlight=False)


seed_app = typer.Typer(
    help="Import data from the systems memvault replaces (docs/export.md).", no_args_is_help=True
)
app.add_typer(seed_app, name="import-seed")


def _seed_report(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.as_dict())
        return
    verb = "would import" if report.dry_run else "imported"
    out.print(f"from {report.source}:", highlight=False)
    for name, entry in report.sources.items():
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(entry["skipped"].items()))
        line = f"  {name}: {entry['rows']} read" + (f"; skipped: {skipped}" if skipped else "")
        out.print(line, highlight=False, markup=False)
    out.print(f"{verb}:", highlight=False)
    for kind, outcomes in report.counts.items():
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        out.print(f"  {kind}: {parts}", highlight=False)


@seed_app.command("sql")
def import_seed_sql(
    url: Annotated[str, typer.Argument(help="sqlite:///path.db or postgresql://...")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Seed 001's long_term_memory and seed 003's user_memories tables, read from URL."""
    with _vault() as vault:
        report = vault.import_seed_sql(url, dry_run=dry_run)
    _seed_report(report, as_json)


@seed_app.command("elysia")
def import_seed_elysia(
    data_dir: Annotated[Path, typer.Argument(help="Seed 002's DATA_DIR.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Seed 002's JSON files: profiles, conversation history, facts, metrics, permanent
    memories, global context."""
    with _vault() as vault:
        report = vault.import_seed_elysia(data_dir, dry_run=dry_run)
    _seed_report(report, as_json)


crypt_app = typer.Typer(
    help="Encryption at rest: JSON-file stores, and memory content on SQL stores "
    "(docs/backends.md#encryption).",
    no_args_is_help=True,
)
app.add_typer(crypt_app, name="encryption")


@crypt_app.command("keygen")
def encryption_keygen(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to this file (mode 600).")
    ] = None,
) -> None:
    """Print a new key (32 random bytes, URL-safe base64), or write it to a file."""
    from memvault.crypto import new_key

    key = new_key()
    if output is None:
        out.print(key, highlight=False)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    err.print(f"wrote a new key to {output}", highlight=False)


@crypt_app.command("rotate")
def encryption_rotate(
    new_key_file: Annotated[Path, typer.Option(help="A file holding the new key.")],
) -> None:
    """Put the store under the new key: every file of a JSON-file store, or every memory
    row and history snapshot of a SQL store that encrypts content (read with the configured
    key, or one of MEMVAULT_ENCRYPTION_OLD_KEYS). Then configure the new key. Run with the
    configured key as the new one to seal rows a SQL store wrote before it encrypted."""
    from memvault.errors import ConfigurationError, MemvaultError
    from memvault.service import admin

    settings = _settings()
    try:
        text = new_key_file.read_text(encoding="ascii")
        done = admin.rotate_encryption_key(settings, text)
    except OSError as exc:
        fail(ErrorCode.NOT_FOUND, f"cannot read {new_key_file}: {exc.strerror}")
    except ConfigurationError as exc:
        err.print(f"error: configuration: {exc}", highlight=False, markup=False)
        raise typer.Exit(9) from None
    except MemvaultError as exc:
        fail(exc.code, exc.message)
    said = ", ".join(f"{n} {kind}" for kind, n in done.items())
    out.print(f"written under the new key: {said}", highlight=False)
