"""The REST door: `create_app()` builds the FastAPI application (served by `memvault serve`).

Routes only translate: parse, call the service, answer. Errors leave as the envelope of
`memvault.api.errors`; the edge middleware adds request ids, the body limit and metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import ASGIApp

from memvault import __version__
from memvault.api import errors
from memvault.api.auth import SECURITY_SCHEMES
from memvault.api.deps import Vault
from memvault.api.metrics import Metrics
from memvault.api.middleware import Edge
from memvault.api.routes import admin, chat, memories, people
from memvault.client import AsyncMemVault
from memvault.config import Settings, load_settings
from memvault.service.access import RateLimiter

log = logging.getLogger("memvault.api")

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
"""Served without a key."""

DESCRIPTION = """Long-term memory for AI assistants and agents.

Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>` (create one with
`memvault keys create`). A user key acts for its own user; an admin key names the user.
Errors answer `{"status": "error", "error": {"code", "message", "details"}, "request_id"}`.
"""


class _App(FastAPI):
    """FastAPI with memvault's `Edge` outside FastAPI's own middleware (its error,
    telemetry and body-limit layers): point reads and searches answered by `api.fastpath` skip them
    (6 of 57 us a read in process), every other request passes through them as before.
    Errors keep their envelopes: FastAPI's layers still handle every request it routes,
    and `Edge` answers an unexpected error of the fast path with the INTERNAL one."""

    edge: dict[str, Any]

    def build_middleware_stack(self) -> ASGIApp:
        return Edge(super().build_middleware_stack(), **self.edge)


def create_app(
    settings: Settings | None = None,
    *,
    vault: AsyncMemVault | None = None,
    fast_reads: bool | None = None,
) -> FastAPI:
    """The application. With `vault`, it serves that open vault (and leaves it open);
    otherwise it opens the store of `settings` at start-up and closes it at shutdown.
    `fast_reads` overrides the setting `api_fast_reads` (`api.fastpath`)."""
    s = vault.settings if vault is not None else (settings or load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if vault is not None:
            yield
            return
        opened = await AsyncMemVault.open(s)
        _attach(app, opened)
        if s.job_worker:  # extraction and summary jobs, left from before a restart too
            opened.start_worker()
        try:
            yield
        finally:
            await opened.close()

    app = _App(
        title="memvault",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
        # FastAPI's OpenTelemetry hooks stay off whatever the environment says: memvault
        # sends nothing anywhere, and they cost time on every request.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    if s.auth_disabled:
        log.warning(
            "AUTHENTICATION IS DISABLED (auth_disabled=true): every request acts as admin; "
            "never expose this server beyond a trusted host"
        )
    app.state.rate_limiter = RateLimiter.for_server()
    app.state.search_slots = asyncio.Semaphore(s.search_concurrency)
    app.state.metrics = Metrics()
    if vault is not None:
        _attach(app, vault)
    errors.install(app)
    _health(app)
    for router in (memories.router, people.router, chat.router, admin.router):
        # The routers' routes join the app's own list: FastAPI's included-router wrapper
        # matched each request against every router in turn (about 50 us a request here).
        app.router.routes.extend(router.routes)
    from memvault.console import router as console_router

    app.router.routes.extend(console_router.routes)  # the web console at /ui
    _document_security(app)
    app.edge = {
        "max_bytes": s.max_request_bytes,
        "metrics": app.state.metrics,
        "fast": s.api_fast_reads if fast_reads is None else fast_reads,
    }
    return app


def _document_security(app: FastAPI) -> None:
    """Name the two ways to send a key in the OpenAPI document (every route but health and
    metrics needs one)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
            for path in OPEN_PATHS:
                for operation in schema["paths"].get(path, {}).values():
                    operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _attach(app: FastAPI, vault: AsyncMemVault) -> None:
    app.state.vault = vault
    app.state.metrics.watch(vault)


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(vault: Vault) -> dict[str, str]:
        """Storage answers (UNAVAILABLE, 503, when it does not)."""
        await vault.list_users(limit=1)
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        return Response(request.app.state.metrics.latest(), media_type=CONTENT_TYPE_LATEST)
