"""`memvault mcp`: the MCP server, over stdio (default) or streamable HTTP (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from memvault.cli.main import _settings, app, err, fail
from memvault.config import Settings
from memvault.errors import ConfigurationError, MemvaultError

DEFAULT_USER = "default"  # a stdio server with neither a user key nor --user acts for it


@app.command()
def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP (with API keys), not stdio.")
    ] = False,
    user: Annotated[
        str | None, typer.Option("--user", help="The user the tools act for (mcp_user).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="--http: address to bind (api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="--http: port (mcp_port).")] = None,
) -> None:
    """Serve memvault's tools and resources to MCP clients (desktop chat apps, coding
    agents): over stdio for a client that starts this command, or over streamable HTTP at
    /mcp, where every request carries an API key as REST's do."""
    settings = _settings()
    if user is not None:
        settings = settings.model_copy(update={"mcp_user": user})
    # Over stdio, stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(level=logging.WARNING, handlers=[logging.StreamHandler()])
    try:
        if http:
            asyncio.run(_serve_http(settings, host or settings.api_host, port or settings.mcp_port))
        else:
            asyncio.run(_serve_stdio(settings))
    except MemvaultError as exc:
        fail(exc.code, exc.message)
    except ConfigurationError as exc:
        err.print(f"error: configuration: {exc}", highlight=False, markup=False)
        raise typer.Exit(9) from None
    except KeyboardInterrupt:
        pass


async def _serve_stdio(settings: Settings) -> None:
    from memvault.client import AsyncMemVault
    from memvault.mcp_server import McpDoor, build_server, fixed_principal
    from memvault.service.access import Principal

    vault = await AsyncMemVault.open(settings)
    try:
        key = None
        if settings.mcp_api_key:
            key = await vault.authenticate(settings.mcp_api_key)
        fixed = settings.mcp_user or (None if key is not None else DEFAULT_USER)
        door = McpDoor(
            vault, fixed_principal(Principal(key)), fixed_user=fixed or None, static=True
        )
        await build_server(door).run_stdio_async()
    finally:
        await vault.close()


async def _serve_http(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from memvault.client import AsyncMemVault
    from memvault.mcp_server import KeyGate, McpDoor, build_server, header_principal

    if not settings.auth_disabled and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"serving MCP on {host}:{port}: every request needs an API key")
    vault = await AsyncMemVault.open(settings)
    try:
        door = McpDoor(vault, header_principal(vault), fixed_user=settings.mcp_user or None)
        server = build_server(door)
        mcp_app = server.streamable_http_app(
            host=host, max_request_body_size=settings.max_request_bytes
        )
        config = uvicorn.Config(
            KeyGate(mcp_app, vault),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
        )
        err.print(f"memvault MCP on http://{host}:{port}/mcp", highlight=False)
        await uvicorn.Server(config).serve()
    finally:
        await vault.close()
