"""The Memory Orchestrator: a ZeroMQ ROUTER socket on `tcp://127.0.0.1:5570` serving the
actions of `memvault.zmq.actions` to REQ clients (seed 004's wire, docs/zmq.md).

Requests go to a pool of worker threads (`zmq_workers`), so one slow search never stalls
the others. A message that cannot be parsed still gets an error reply with the right code,
and nothing a client does (vanishing mid-request included) leaves state behind: a reply to
a gone peer is dropped by ZeroMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from memvault import ids
from memvault.client import AsyncMemVault
from memvault.config import Settings
from memvault.errors import (
    ConfigurationError,
    ErrorCode,
    InvalidArgumentError,
    MemvaultError,
    UnauthenticatedError,
)
from memvault.service.access import Principal, RateLimiter
from memvault.service.admin import drive
from memvault.service.cache import ReadCache
from memvault.zmq import protocol
from memvault.zmq.actions import HANDLERS, WRITES, Context, stats_of

log = logging.getLogger("memvault.zmq")

_IDEMPOTENT_KEEP = 10_000
_IDEMPOTENT_TTL_S = 3600.0


class Orchestrator:
    """The server: `serve_forever(stop)` in a thread, or `await run(stop)` from asyncio.

    A ROUTER socket faces the clients; `zmq.proxy` (in C, outside the GIL) hands each
    request to one of `zmq_workers` threads over inproc, each with a REP socket and the
    service on its own thread (storage reads there, embedding on the shared pool), so a slow
    search holds one worker while the others go on. Measured on loopback: a bare proxy with
    REP workers answers about 10,000 round trips/s to one client; asyncio with zmq.asyncio
    about 8,000 before any work.

    A write sent again with the same `idempotency_key` (by the same key holder, within an
    hour) gets the first reply instead of a second write: what makes a client's retry of a
    write safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.vault = AsyncMemVault.open_inline(s)
        if s.job_worker and s.extractor != "off":
            self.vault.start_worker()
        self.ctx = Context(
            vault=self.vault,
            cache=ReadCache(
                self.vault.backend,
                max_entries=s.zmq_cache_entries,
                max_bytes=int(s.zmq_cache_mb * 1024 * 1024),
                ttl_s=s.zmq_cache_ttl_s,
            ),
            default_user=s.zmq_default_user,
            search_slots=threading.BoundedSemaphore(s.search_concurrency),
        )
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.rate_limiter = RateLimiter()
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple[str, str], tuple[float, list[bytes]]] = OrderedDict()
        self.address: str | None = None

    def close(self) -> None:
        drive(self.vault.close())

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        """Serve from asyncio code until `stop` is set (the work happens on threads)."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        up = ready or asyncio.Event()

        def announce() -> None:
            loop.call_soon_threadsafe(up.set)

        serving = asyncio.ensure_future(
            loop.run_in_executor(None, self.serve_forever, halt, announce)
        )
        try:
            started: asyncio.Future[Any] = asyncio.ensure_future(up.wait())
            await asyncio.wait([started, serving], return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            if serving.done():
                await serving  # raises what stopped it
            await stop.wait()
        finally:
            halt.set()
            await serving

    def serve_forever(self, stop: threading.Event, ready: Callable[[], None] | None = None) -> None:
        """Serve until `stop` is set; requests in flight finish first."""
        zctx: zmq.Context[zmq.Socket[Any]] = zmq.Context()
        auth = None
        inproc = f"inproc://memvault-orchestrator-{id(self)}"
        front = zctx.socket(zmq.ROUTER)
        back = zctx.socket(zmq.DEALER)
        control = zctx.socket(zmq.PAIR)
        steer = zctx.socket(zmq.PAIR)
        workers: list[threading.Thread] = []
        try:
            front.setsockopt(zmq.LINGER, 0)
            # Far past the documented limit ZeroMQ drops the message itself; up to twice
            # the limit the sender gets a PAYLOAD_TOO_LARGE reply.
            front.setsockopt(zmq.MAXMSGSIZE, 2 * self.settings.zmq_max_message_bytes + 1024)
            if self.settings.zmq_curve_dir:
                auth = self._secure(zctx, front, Path(self.settings.zmq_curve_dir))
            self.address = _bind(front, self.settings.zmq_address)
            back.setsockopt(zmq.LINGER, 0)
            back.bind(inproc)
            control.bind(inproc + "-control")
            steer.connect(inproc + "-control")
            for n in range(self.settings.zmq_workers):
                t = threading.Thread(
                    target=self._work, args=(zctx, inproc, stop), name=f"memvault-zmq-{n}"
                )
                t.start()
                workers.append(t)
            stopper = threading.Thread(target=_stop_proxy, args=(stop, steer), daemon=True)
            stopper.start()
            log.info("orchestrator listening on %s", self.address)
            if ready is not None:
                ready()
            zmq.proxy_steerable(front, back, None, control)
        finally:
            stop.set()
            for t in workers:
                t.join(self.settings.api_graceful_timeout_s)
            for sock in (front, back, control, steer):
                sock.close(0)
            if auth is not None:
                auth.stop()
            zctx.term()

    def _secure(self, zctx: zmq.Context[Any], sock: zmq.Socket[Any], folder: Path) -> Any:
        from zmq.auth import load_certificate
        from zmq.auth.thread import ThreadAuthenticator

        secret = folder / "server.key_secret"
        allowed = folder / "authorized"
        if not secret.is_file() or not allowed.is_dir():
            raise ConfigurationError(
                f"zmq_curve_dir {folder} needs server.key_secret and authorized/ "
                "(make them with `memvault orchestrator keygen`)"
            )
        public, private = load_certificate(str(secret))
        auth = ThreadAuthenticator(zctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(allowed))
        sock.curve_secretkey = private
        sock.curve_publickey = public
        sock.curve_server = True
        return auth

    def _work(self, zctx: zmq.Context[Any], inproc: str, stop: threading.Event) -> None:
        sock = zctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        # A receive timeout, not poll(): a Python-level poll per request cost about 20% of
        # the single-client rate; the timeout only lets the loop see `stop`.
        sock.setsockopt(zmq.RCVTIMEO, 100)
        sock.connect(inproc)
        try:
            while not stop.is_set():
                try:
                    frames = sock.recv_multipart()
                except zmq.Again:
                    continue
                with self._lock:
                    self.in_flight += 1
                try:
                    reply = drive(self.handle(frames))
                finally:
                    with self._lock:
                        self.in_flight -= 1
                sock.send_multipart(reply)
        finally:
            sock.close(0)

    async def handle(self, frames: list[bytes]) -> list[bytes]:
        """One request's frames in, the reply's frames out (never raises)."""
        started = time.perf_counter()
        request_id: str | None = None
        idem: tuple[str, str] | None = None
        compress = False
        action = "invalid"
        try:
            try:
                req = protocol.decode_request(frames, self.settings.zmq_max_message_bytes)
            except MemvaultError:
                request_id = protocol.request_id_of(frames)
                raise
            request_id = req.request_id or ids.new_id("req")
            compress = req.compress
            action = req.action if req.action in HANDLERS or req.action == "stats" else "unknown"
            handler = HANDLERS.get(req.action)
            if handler is None and req.action != "stats":
                raise InvalidArgumentError(
                    f"unknown action {req.action!r}; actions: {sorted([*HANDLERS, 'stats'])}",
                    {"action": req.action},
                )
            who = await self._who(req.api_key)
            if handler is None:
                who.require_admin()
                data: Any = self.stats()
            else:
                if req.idempotency_key is not None and req.action in WRITES:
                    idem = (who.actor, req.idempotency_key)
                    with self._lock:
                        remembered = self._done.get(idem)
                    if remembered is not None and remembered[0] > time.monotonic():
                        return remembered[1]
                data = await handler(self.ctx, who, req.payload)
            body = protocol.success(data, request_id)
            code = "OK"
        except MemvaultError as exc:
            body = protocol.failure(exc, request_id)
            code = exc.code.value
        except Exception:
            log.exception("internal error", extra={"request_id": request_id})
            body = protocol.failure(MemvaultError("internal error"), request_id)
            code = ErrorCode.INTERNAL.value
        reply = protocol.pack(body, self.settings.zmq_compress_bytes if compress else None)
        with self._lock:
            self.requests[action] += 1
            if code != "OK":
                self.errors[code] += 1
            elif idem is not None:
                self._done[idem] = (time.monotonic() + _IDEMPOTENT_TTL_S, reply)
                while len(self._done) > _IDEMPOTENT_KEEP:
                    self._done.popitem(last=False)
        log.info(
            "%s %s",
            action,
            code,
            extra={
                "request_id": request_id,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        return reply

    async def _who(self, api_key: str | None) -> Principal:
        if self.settings.auth_disabled:
            return Principal(None)
        if not api_key:
            raise UnauthenticatedError("an API key is required ('api_key' in the request)")
        key = await self.vault.authenticate(api_key)
        rate = key.rate_per_minute or self.settings.rate_per_minute
        if rate:
            self.rate_limiter.take(key.key_id, rate)
        return Principal(key)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counters = {
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "in_flight": self.in_flight,
                "workers": self.settings.zmq_workers,
            }
        return stats_of(self.ctx, counters)


def _bind(sock: zmq.Socket[Any], address: str) -> str:
    try:
        if address.endswith(":0"):
            port = sock.bind_to_random_port(address[: address.rfind(":")])
            return f"{address[: address.rfind(':')]}:{port}"
        sock.bind(address)
        return address
    except zmq.ZMQError as exc:
        raise ConfigurationError(f"cannot bind the orchestrator to {address}: {exc}") from exc


def _stop_proxy(stop: threading.Event, steer: zmq.Socket[Any]) -> None:
    stop.wait()
    with contextlib.suppress(zmq.ZMQError):
        steer.send(b"TERMINATE")


__all__ = ["Orchestrator"]
