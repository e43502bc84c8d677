"""The Memory Orchestrator: a ZeroMQ ROUTER socket on `tcp://127.0.0.1:5570` serving the
actions of `memvault.zmq.actions` to REQ clients (seed 004's wire, docs/zmq.md).

Each request runs as its own asyncio task (at most `zmq_max_inflight` at once), so one slow
search never stalls the others; replies go back by the client's routing id. A message that
cannot be parsed still gets an error reply with the right code, and nothing a client does
(vanishing mid-request included) leaves state behind: a reply to a gone peer is dropped by
ZeroMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

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
from memvault.service.access import Principal
from memvault.service.cache import ReadCache
from memvault.zmq import protocol
from memvault.zmq.actions import HANDLERS, WRITES, Context, stats_of

log = logging.getLogger("memvault.zmq")

_IDEMPOTENT_KEEP = 10_000
_IDEMPOTENT_TTL_S = 3600.0


class Orchestrator:
    """The server. `await run(stop)` serves until `stop` is set.

    A write sent again with the same `idempotency_key` (by the same key holder, within an
    hour) gets the first reply instead of a second write: what makes a client's retry of a
    write safe."""

    def __init__(self, vault: AsyncMemVault, settings: Settings | None = None) -> None:
        self.vault = vault
        self.settings = s = settings or vault.settings
        self.ctx = Context(
            vault=vault,
            cache=ReadCache(
                vault.backend,
                max_entries=s.zmq_cache_entries,
                max_bytes=int(s.zmq_cache_mb * 1024 * 1024),
                ttl_s=s.zmq_cache_ttl_s,
            ),
            default_user=s.zmq_default_user,
        )
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self._done: OrderedDict[tuple[str, str], tuple[float, list[bytes]]] = OrderedDict()
        self._zctx = zmq.asyncio.Context()
        self._auth: Any = None
        self.address: str | None = None

    def _socket(self) -> zmq.asyncio.Socket:
        s = self.settings
        sock = self._zctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Far past the documented limit ZeroMQ drops the message itself; up to twice the
        # limit the sender gets a PAYLOAD_TOO_LARGE reply.
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * s.zmq_max_message_bytes + 1024)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if s.zmq_curve_dir:
            self._secure(sock, Path(s.zmq_curve_dir))
        return sock

    def _secure(self, sock: zmq.asyncio.Socket, folder: Path) -> None:
        from zmq.auth import load_certificate
        from zmq.auth.asyncio import AsyncioAuthenticator

        secret = folder / "server.key_secret"
        allowed = folder / "authorized"
        if not secret.is_file() or not allowed.is_dir():
            raise ConfigurationError(
                f"zmq_curve_dir {folder} needs server.key_secret and authorized/ "
                "(make them with `memvault orchestrator keygen`)"
            )
        public, private = load_certificate(str(secret))
        self._auth = AsyncioAuthenticator(self._zctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(allowed))
        sock.curve_secretkey = private
        sock.curve_publickey = public
        sock.curve_server = True

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        sock = self._socket()
        try:
            self.address = _bind(sock, self.settings.zmq_address)
            log.info("orchestrator listening on %s", self.address)
            if ready is not None:
                ready.set()
            await self._serve(sock, stop)
        finally:
            sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._zctx.term()

    async def _serve(self, sock: zmq.asyncio.Socket, stop: asyncio.Event) -> None:
        limit = asyncio.Semaphore(self.settings.zmq_max_inflight)
        send_lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                recv = asyncio.ensure_future(sock.recv_multipart(copy=True))
                done, _ = await asyncio.wait({recv, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                frames = recv.result()
                await limit.acquire()
                task = asyncio.ensure_future(self._answer(sock, send_lock, frames))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: limit.release())
            if tasks:  # finish what is in flight
                await asyncio.wait(tasks, timeout=self.settings.api_graceful_timeout_s)
        finally:
            stopping.cancel()

    async def _answer(
        self, sock: zmq.asyncio.Socket, send_lock: asyncio.Lock, frames: list[bytes]
    ) -> None:
        if len(frames) < 2:
            return  # not from a REQ or DEALER peer: nobody to answer
        ident, rest = frames[0], frames[1:]
        envelope = [ident]
        if rest and rest[0] == b"":
            envelope.append(b"")
            rest = rest[1:]
        self.in_flight += 1
        try:
            reply = await self.handle(rest)
        finally:
            self.in_flight -= 1
        async with send_lock:
            with contextlib.suppress(zmq.ZMQError):  # the peer went away: nothing to keep
                await sock.send_multipart(envelope + reply)

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
        return Principal(await self.vault.authenticate(api_key))

    def stats(self) -> dict[str, Any]:
        return stats_of(
            self.ctx,
            {
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "in_flight": self.in_flight,
            },
        )


def _bind(sock: zmq.asyncio.Socket, address: str) -> str:
    try:
        if address.endswith(":0"):
            port = sock.bind_to_random_port(address[: address.rfind(":")])
            return f"{address[: address.rfind(':')]}:{port}"
        sock.bind(address)
        return address
    except zmq.ZMQError as exc:
        raise ConfigurationError(f"cannot bind the orchestrator to {address}: {exc}") from exc


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Open the store and serve until `stop` is set (`memvault orchestrator`)."""
    vault = await AsyncMemVault.open(settings)
    try:
        if settings.auth_disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (auth_disabled=true): every request acts as admin"
            )
        await Orchestrator(vault, settings).run(stop)
    finally:
        await vault.close()


__all__ = ["Orchestrator", "serve"]
