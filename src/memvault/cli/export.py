"""`memvault export USER`: everything a user owns, as one JSON document or JSON lines."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from memvault.cli.main import _vault, app, err, fail
from memvault.errors import ErrorCode
from memvault.service.export import assemble


@app.command()
def export(
    user: Annotated[str, typer.Argument(help="The user whose records to export.")],
    fmt: Annotated[
        str, typer.Option("--format", help="json (one document) or jsonl (a line per record).")
    ] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export everything USER owns: profile, memories (deleted and expired too) with their
    history, messages, sessions, summary and metrics (the same records as
    GET /v1/users/{user_id}/export)."""
    if fmt not in ("json", "jsonl"):
        fail(ErrorCode.INVALID_ARGUMENT, f"--format must be json or jsonl, got {fmt!r}")
    with _vault() as vault:
        exported = vault.export_user(user)
        records = itertools.chain([next(exported)], exported)  # NOT_FOUND before any output
        stream: TextIO = sys.stdout if output is None else output.open("w", encoding="utf-8")
        try:
            count = _write(records, fmt, stream)
        finally:
            if output is not None:
                stream.close()
    if output is not None:
        err.print(f"wrote {count} records of {user} to {output}", highlight=False)


def _write(records: Any, fmt: str, stream: TextIO) -> int:
    count = 0
    if fmt == "jsonl":
        for kind, record in records:
            stream.write(json.dumps({"kind": kind, "record": record}, ensure_ascii=False) + "\n")
            count += 1
        return count
    items = list(records)
    json.dump(assemble(items), stream, ensure_ascii=False, indent=2)
    stream.write("\n")
    return len(items)
