"""`memvault orchestrator` (the ZeroMQ Memory Orchestrator) and `memvault orchestrator
keygen` (CurveZMQ key files)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
from pathlib import Path
from typing import Annotated

import typer

from memvault.cli.main import CONFIG_EXIT, _settings, app, err, out
from memvault.config import Settings
from memvault.errors import ConfigurationError

log = logging.getLogger("memvault.zmq")

orchestrator_app = typer.Typer(
    help="The ZeroMQ Memory Orchestrator (seed 004).", invoke_without_command=True
)
app.add_typer(orchestrator_app, name="orchestrator")


@orchestrator_app.callback()
def orchestrator(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option(help="Address to bind (zmq_address), e.g. tcp://0.0.0.0:5570.")
    ] = None,
) -> None:
    """Serve the orchestrator until Ctrl-C or SIGTERM (requests in flight finish)."""
    if ctx.invoked_subcommand is not None:
        return
    from memvault.api.logs import configure

    settings = _settings()
    if address:
        settings = settings.model_copy(update={"zmq_address": address})
    configure(settings)
    try:
        asyncio.run(run_orchestrator(settings))
    except ConfigurationError as exc:
        err.print(f"error: configuration: {exc}", highlight=False, markup=False)
        raise typer.Exit(CONFIG_EXIT) from None


async def run_orchestrator(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from memvault.zmq.metrics import OrchestratorCollector
    from memvault.zmq.server import Orchestrator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    orch = Orchestrator(settings)
    try:
        if settings.auth_disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (auth_disabled=true): every request acts as admin"
            )
        if settings.zmq_metrics_port:
            registry = CollectorRegistry()
            registry.register(OrchestratorCollector(orch))
            start_http_server(settings.zmq_metrics_port, addr="127.0.0.1", registry=registry)
        await orch.run(stop)
    finally:
        orch.close()


@orchestrator_app.command("keygen")
def keygen(
    folder: Annotated[Path, typer.Argument(help="Folder for the key files (created).")],
) -> None:
    """Make CurveZMQ keys: the server's pair, one client pair, and authorized/ holding the
    client's public key. Point zmq_curve_dir at FOLDER on the server; give clients
    client.key_secret and server.key (MemoryClient(curve_dir=FOLDER))."""
    from zmq.auth import create_certificates

    folder.mkdir(parents=True, exist_ok=True)
    create_certificates(str(folder), "server")
    create_certificates(str(folder), "client")
    allowed = folder / "authorized"
    allowed.mkdir(exist_ok=True)
    shutil.copy(folder / "client.key", allowed / "client.key")
    for name in ("server.key_secret", "client.key_secret"):
        (folder / name).chmod(0o600)
    out.print(f"wrote {folder}/server.key(_secret), client.key(_secret), authorized/client.key")
