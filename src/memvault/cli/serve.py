"""`memvault serve` (the REST server) and `memvault keys` (API keys)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memvault.cli.main import JsonOpt, _print_json, _settings, _vault, app, err, fail, out
from memvault.config import Settings
from memvault.errors import ErrorCode

keys_app = typer.Typer(help="API keys for the REST server.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (api_port).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (api_workers).")] = None,
    zmq: Annotated[
        bool, typer.Option("--zmq", help="Serve the ZeroMQ orchestrator too (zmq_address).")
    ] = False,
) -> None:
    """Serve the REST API (OpenAPI at /docs) until Ctrl-C or SIGTERM; in-flight requests
    finish first (up to api_graceful_timeout_s)."""
    import uvicorn

    from memvault.api import create_app
    from memvault.api.logs import configure

    settings = _settings()
    configure(settings)
    n = workers or settings.api_workers
    options = dict(
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.api_graceful_timeout_s),
        server_header=False,
    )
    if zmq:
        if n > 1:
            fail(ErrorCode.INVALID_ARGUMENT, "--zmq runs in one process: drop --workers")
        asyncio.run(_both(settings, options))
        return
    if n == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    # Worker processes build their own app from the environment: pass the CLI's choices on.
    os.environ["MEMVAULT_DATABASE_URL"] = settings.database_url
    os.environ["MEMVAULT_DATA_DIR"] = str(settings.data_dir)
    from memvault.api.metrics import MULTIPROC_ENV
    from memvault.service.access import RATE_FILE_ENV

    # What the workers share besides the store: one metrics directory (api/metrics.py: a
    # scrape reaches one worker and answers for all; a directory given in the environment
    # is used, emptied first) and one file of rate-limit buckets (service/access.py).
    run_dir = Path(tempfile.mkdtemp(prefix="memvault-serve-"))
    given = os.environ.get(MULTIPROC_ENV)
    counts = Path(given) if given else run_dir / "metrics"
    counts.mkdir(parents=True, exist_ok=True)
    for stale in counts.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(counts)
    os.environ[RATE_FILE_ENV] = str(run_dir / "rate-limits")
    try:
        uvicorn.run(
            "memvault.api.app:create_app",
            factory=True,
            workers=n,
            **options,  # type: ignore[arg-type]
        )
    finally:
        for done in counts.glob("*.db"):
            done.unlink()
        shutil.rmtree(run_dir, ignore_errors=True)


async def _both(settings: Settings, options: dict[str, object]) -> None:
    """REST and the orchestrator in one process, on one open store."""
    import uvicorn

    from memvault.api import create_app
    from memvault.client import AsyncMemVault
    from memvault.zmq.metrics import OrchestratorCollector
    from memvault.zmq.server import Orchestrator

    vault = await AsyncMemVault.open(settings)
    orch = Orchestrator(settings)  # its own connections, on worker threads
    try:
        app_ = create_app(vault=vault)
        app_.state.metrics.registry.register(OrchestratorCollector(orch))
        server = uvicorn.Server(uvicorn.Config(app_, **options))  # type: ignore[arg-type]
        stop = asyncio.Event()
        zmq_task = asyncio.ensure_future(orch.run(stop))
        try:
            await server.serve()
        finally:
            stop.set()
            await zmq_task
    finally:
        orch.close()
        await vault.close()


@keys_app.command("create")
def keys_create(
    user: Annotated[str | None, typer.Option("--user", help="Bind the key to this user.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin key (every user).")] = False,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    rate: Annotated[
        int | None, typer.Option(help="Requests per minute for this key (default: none).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its secret (shown this once)."""
    if admin == (user is not None):
        fail(ErrorCode.INVALID_ARGUMENT, "give either --user USER or --admin")
    with _vault() as vault:
        key, secret = vault.create_api_key(
            user, admin=admin, name=name, rate_per_minute=rate, actor="cli"
        )
    if as_json:
        _print_json({"key": key.model_dump(mode="json"), "secret": secret})
        return
    who = "admin" if key.user_id is None else f"user {key.user_id}"
    err.print(f"created {key.key_id} for {who}; the secret is shown only now:")
    out.print(secret, highlight=False)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List keys (never their secrets)."""
    with _vault() as vault:
        keys = vault.list_api_keys(user, include_revoked=revoked)
    if as_json:
        _print_json([k.model_dump(mode="json") for k in keys])
        return
    table = Table(title="API keys")
    for col in ("key_id", "prefix", "user", "name", "rate/min", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.key_id,
            k.prefix + "...",
            k.user_id or "(admin)",
            k.name or "",
            "" if k.rate_per_minute is None else str(k.rate_per_minute),
            k.created_at.isoformat(timespec="seconds"),
            "" if k.revoked_at is None else k.revoked_at.isoformat(timespec="seconds"),
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key_id to revoke.")]) -> None:
    """Revoke a key: running servers refuse it within auth_cache_s seconds."""
    with _vault() as vault:
        key = vault.revoke_api_key(key_id, actor="cli")
    out.print(f"revoked {key.key_id}")
