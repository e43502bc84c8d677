"""`memvault worker`, `memvault jobs`, `memvault remember`, `memvault summarize`: extraction
and summaries from the command line (docs/extraction.md)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer
from rich.table import Table

from memvault.cli.main import JsonOpt, _print_json, _vault, app, out

jobs_app = typer.Typer(help="Background jobs: extraction and summaries.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Run the due jobs, then exit (no waiting).")
    ] = False,
) -> None:
    """Run extraction and summary jobs until stopped (Ctrl-C or SIGTERM finish the job in
    hand). Any number of workers may share a store: jobs are leased."""
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with _vault() as vault:
        done = failed = retried = 0
        while not stop.is_set():
            report = vault.run_jobs()
            done, failed, retried = (
                done + report.done,
                failed + report.failed,
                retried + report.retried,
            )
            if report.claimed:
                continue
            if once:
                break
            stop.wait(vault.settings.job_poll_s)
        out.print(f"jobs done {done}, retried {retried}, failed {failed}", highlight=False)


@jobs_app.command("list")
def jobs_list(
    user: Annotated[str | None, typer.Option(help="Only this user's jobs.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, running, done or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first, with their errors."""
    with _vault() as vault:
        rows = vault.list_jobs(user_id=user, status=status, limit=limit)
        counts = vault.job_counts(user)
    if as_json:
        _print_json([j.model_dump(mode="json") for j in rows])
        return
    table = Table(title="jobs " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for name in ("job_id", "user", "kind", "status", "attempts", "created", "error / result"):
        table.add_column(name, overflow="fold")
    for j in rows:
        table.add_row(
            j.job_id,
            j.user_id,
            j.kind,
            j.status,
            str(j.attempts),
            j.created_at.isoformat(timespec="seconds"),
            j.last_error or ("" if j.result is None else str(j.result)),
        )
    out.print(table)


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[
        list[str] | None, typer.Argument(help="Jobs to retry (default: all failed).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's failed jobs.")] = None,
) -> None:
    """Queue failed jobs again."""
    with _vault() as vault:
        n = vault.retry_jobs(job_id or None, user_id=user)
    out.print(f"{n} job(s) queued again", highlight=False)


@app.command()
def remember(
    user: str,
    text: Annotated[list[str], typer.Argument(help="Messages, in order.")],
    role: Annotated[str, typer.Option(help="Who said them.")] = "user",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Extract now instead of by the worker.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Add messages to USER's history and extract memories from them."""
    started = time.perf_counter()
    with _vault() as vault:
        before = {m.memory_id for m in vault.get_user_facts(user)}
        vault.remember(user, [{"role": role, "content": t} for t in text], wait=wait)
        facts = [m for m in vault.get_user_facts(user) if m.memory_id not in before]
    if as_json:
        _print_json([m.model_dump(mode="json") for m in facts])
        return
    for m in facts:
        out.print(f"+ {m.memory_id} [{m.category}] {m.text}", highlight=False)
    took = (time.perf_counter() - started) * 1000
    out.print(f"{len(text)} message(s), {len(facts)} new fact(s) in {took:.0f} ms", highlight=False)


@app.command()
def summarize(
    user: str,
    mode: Annotated[
        str | None, typer.Option(help="extractive or llm (default: MEMVAULT_SUMMARY_MODE).")
    ] = None,
) -> None:
    """Build and store USER's summary from their facts and recent messages."""
    with _vault() as vault:
        summary = vault.generate_summary(user, mode=mode)
    out.print(summary.content, highlight=False, markup=False)
