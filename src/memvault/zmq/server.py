"""The Memory Orchestrator: a ZeroMQ ROUTER socket on `tcp://127.0.0.1:5570` serving the
actions of `memvault.zmq.actions` to REQ clients (seed 004's wire, docs/zmq.md).

Requests go to a pool of worker threads (`zmq_workers`), so one slow search never stalls
the others. A message that cannot be parsed still gets an error reply with the right code,
and nothing a client does (vanishing mid-request included) leaves state behind: a reply to
a gone peer is dropped by ZeroMQ.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import Counter, OrderedDict, deque
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
    UnavailableError,
)
from memvault.limits import MAX_ZMQ_QUEUED
from memvault.models import ApiKey
from memvault.service.access import Principal, RateLimiter
from memvault.service.admin import drive
from memvault.service.cache import ReadCache
from memvault.zmq import protocol
from memvault.zmq.actions import CACHED_READS, HANDLERS, WRITES, Context, stats_of

log = logging.getLogger("memvault.zmq")

_IDEMPOTENT_KEEP = 10_000
_IDEMPOTENT_TTL_S = 3600.0
_READY = b"\x00ready"  # a worker's first word: connected and idle
QUEUE_LIMIT = MAX_ZMQ_QUEUED  # read at each use: a test may lower it
_RCVMORE = int(zmq.RCVMORE)


class Orchestrator:
    """The server: `serve_forever(stop)` in a thread, or `await run(stop)` from asyncio.

    One thread receives every request on a ROUTER socket. A read the cache holds (get,
    batch read, a repeated search) it answers at once, when the coherence check is local
    (SQLite); anything else it hands to an idle one of `zmq_workers` threads over inproc,
    in order of arrival, so a slow search holds one worker while the others go on and
    nothing queues behind a busy worker. Workers send their replies back through the same
    socket (bound on inproc too), so one blocking receive serves all: no poll. Measured on
    loopback (bench/bench_zmq.py): the bare `zmq.proxy` with REP workers this replaced
    added about 45 us a round trip; a cached `get_memory` takes a little under twice a
    bare pyzmq echo's round trip (docs/zmq.md).

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
        backend = self.vault.backend
        self._changed_now: Callable[[], bool] | None = (
            getattr(backend, "data_changed_now", None)
            if backend.capabilities.local_change_check
            else None
        )

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
        """Serve until `stop` is set; requests in flight finish first (up to
        `api_graceful_timeout_s`), and requests arriving meanwhile answer UNAVAILABLE."""
        zctx: zmq.Context[zmq.Socket[Any]] = zmq.Context()
        auth = None
        base = f"inproc://memvault-orchestrator-{id(self)}"
        front = zctx.socket(zmq.ROUTER)
        back = zctx.socket(zmq.ROUTER)
        # Workers are known by a random prefix no client can guess (a client with a
        # worker's id could pass its frames off as replies).
        prefix = secrets.token_bytes(16)
        names = [prefix + n.to_bytes(2, "big") for n in range(self.settings.zmq_workers)]
        quit_workers = threading.Event()
        workers: list[threading.Thread] = []
        try:
            front.setsockopt(zmq.LINGER, 0)
            # Far past the documented limit ZeroMQ drops the message itself; up to twice
            # the limit the sender gets a PAYLOAD_TOO_LARGE reply.
            front.setsockopt(zmq.MAXMSGSIZE, 2 * self.settings.zmq_max_message_bytes + 1024)
            # A receive timeout, not poll(): a Python-level poll per request cost about a
            # sixth of a cached read's round trip; the timeout only lets the loop see `stop`.
            front.setsockopt(zmq.RCVTIMEO, 100)
            if self.settings.zmq_curve_dir:
                auth = self._secure(zctx, front, Path(self.settings.zmq_curve_dir))
            self.address = _bind(front, self.settings.zmq_address)
            front.bind(base + "-replies")
            back.setsockopt(zmq.LINGER, 0)
            back.setsockopt(zmq.ROUTER_MANDATORY, 1)
            back.bind(base + "-work")
            for n, name in enumerate(names):
                t = threading.Thread(
                    target=self._work,
                    args=(zctx, base, name, quit_workers),
                    name=f"memvault-zmq-{n}",
                )
                t.start()
                workers.append(t)
            idle = self._await_workers(front, set(names))
            log.info("orchestrator listening on %s", self.address)
            if ready is not None:
                ready()
            self._route(front, back, set(names), idle, stop)
        finally:
            stop.set()
            quit_workers.set()
            for t in workers:
                t.join(self.settings.api_graceful_timeout_s)
            for sock in (front, back):
                sock.close(0)
            if auth is not None:
                auth.stop()
            zctx.term()

    def _await_workers(self, front: zmq.Socket[Any], names: set[bytes]) -> deque[bytes]:
        """Every worker's first word (it is connected and idle), in the order they came."""
        idle: deque[bytes] = deque()
        deadline = time.monotonic() + 30
        while len(idle) < len(names):
            if time.monotonic() > deadline:
                raise ConfigurationError("the orchestrator's workers did not start")
            try:
                frames = front.recv_multipart()
            except zmq.Again:
                continue
            if frames[0] in names and frames[1:] == [_READY]:
                idle.append(frames[0])
        return idle

    def _route(
        self,
        front: zmq.Socket[Any],
        back: zmq.Socket[Any],
        names: set[bytes],
        idle: deque[bytes],
        stop: threading.Event,
    ) -> None:
        """The receiving thread: answers cache hits itself, hands every other request to an
        idle worker (or queues it, up to `QUEUE_LIMIT`), and sends the workers' replies."""
        waiting: deque[list[bytes]] = deque()
        drain_until: float | None = None
        # pyzmq's recv_multipart/send_multipart, without their per-call overhead (this
        # loop carries every request).
        recv, more, send = front.recv, front.get, front.send
        sndmore = zmq.SNDMORE

        def reply(frames: list[bytes]) -> None:
            for frame in frames[:-1]:
                send(frame, sndmore)
            send(frames[-1])

        answer_hit = self._answer_hit
        while True:
            if drain_until is not None and (
                (len(idle) == len(names) and not waiting) or time.monotonic() > drain_until
            ):
                return
            try:
                frames = [recv()]
            except zmq.Again:
                if stop.is_set() and drain_until is None:
                    drain_until = time.monotonic() + self.settings.api_graceful_timeout_s
                continue
            while more(_RCVMORE):
                frames.append(recv())
            stopping = stop.is_set()  # after the receive: nothing taken in after a stop
            if stopping and drain_until is None:
                drain_until = time.monotonic() + self.settings.api_graceful_timeout_s
            if frames[0] in names:  # a worker: its reply (or first word), and it is idle
                if len(frames) > 2:
                    reply(frames[1:])  # to a vanished client: dropped
                idle.append(frames[0])
                while waiting and idle:
                    self._hand_over(front, back, idle.popleft(), waiting.popleft())
                continue
            # A REQ client's message is [id, b"", body]: the common case needs no search.
            cut = 2 if len(frames) == 3 and not frames[1] else _delimiter(frames)
            if cut is None:  # not a REQ client's message: nowhere to reply (REP drops these)
                continue
            if stopping:
                self._refuse(front, frames, cut, "the orchestrator is shutting down")
                continue
            try:
                hit = answer_hit(frames[cut:])
            except Exception:  # never this thread's end: a worker answers it in full
                log.exception("the cache-hit path failed; a worker answers instead")
                hit = None
            if hit is not None:
                reply(frames[:cut] + hit)
            elif idle:
                self._hand_over(front, back, idle.popleft(), frames)
            elif len(waiting) < QUEUE_LIMIT:
                waiting.append(frames)
            else:
                self._refuse(
                    front, frames, cut, f"the orchestrator is busy ({QUEUE_LIMIT} waiting)"
                )

    def _hand_over(
        self, front: zmq.Socket[Any], back: zmq.Socket[Any], worker: bytes, frames: list[bytes]
    ) -> None:
        try:
            back.send_multipart([worker, *frames])
        except zmq.ZMQError:  # the worker is gone (only while stopping)
            self._refuse(front, frames, _delimiter(frames) or 0, "no worker is left")

    def _refuse(self, front: zmq.Socket[Any], frames: list[bytes], cut: int, why: str) -> None:
        err = UnavailableError(why)
        rid = protocol.request_id_of(frames[cut:])
        with self._lock:
            self.requests["unavailable"] += 1
            self.errors[err.code.value] += 1
        front.send_multipart(frames[:cut] + protocol.pack(protocol.failure(err, rid), None))

    def _answer_hit(self, body: list[bytes]) -> list[bytes] | None:
        """The reply to a read the cache holds, made on the receiving thread; None for
        anything else (a miss, a write, an error to report, a key not checked lately), which
        a worker then handles in full. Only where the coherence check is local (SQLite): on
        PostgreSQL it is a round trip, which would hold up every other request."""
        changed_now = self._changed_now
        if changed_now is None:
            return None
        started = time.perf_counter()
        try:
            req = protocol.decode_request(body, self.settings.zmq_max_message_bytes)
            plan = CACHED_READS.get(req.action)
            if plan is None:
                return None
            if self.settings.auth_disabled:
                key = None
            else:
                key = self.vault.known_key(req.api_key) if req.api_key else None
                if key is None:
                    return None
            read = plan(self.ctx, Principal(key), req.payload)
            data = self.ctx.cache.peek_now(read.key, changed_now, protocol.dumps)
        except MemvaultError:
            return None
        if data is None:
            return None
        request_id = req.request_id or ids.new_id("req")
        try:
            if key is not None:
                self._take(key)
            out = protocol.success_encoded(data, request_id)
            code = "OK"
        except MemvaultError as exc:
            out = protocol.failure(exc, request_id)
            code = exc.code.value
        return self._finish(req.action, code, out, request_id, req.compress, None, started)

    def _work(
        self, zctx: zmq.Context[Any], base: str, name: bytes, quit_workers: threading.Event
    ) -> None:
        inbox = zctx.socket(zmq.DEALER)
        outbox = zctx.socket(zmq.DEALER)
        try:
            for sock, end in ((inbox, "-work"), (outbox, "-replies")):
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.ROUTING_ID, name)
                sock.connect(base + end)
            inbox.setsockopt(zmq.RCVTIMEO, 100)
            outbox.send(_READY)
            while not quit_workers.is_set():
                try:
                    frames = inbox.recv_multipart()
                except zmq.Again:
                    continue
                cut = _delimiter(frames) or 0
                with self._lock:
                    self.in_flight += 1
                try:
                    reply = drive(self.handle(frames[cut:]))
                finally:
                    with self._lock:
                        self.in_flight -= 1
                outbox.send_multipart(frames[:cut] + reply)
        finally:
            inbox.close(0)
            outbox.close(0)

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
        return self._finish(action, code, body, request_id, compress, idem, started)

    def _finish(
        self,
        action: str,
        code: str,
        body: bytes,
        request_id: str | None,
        compress: bool,
        idem: tuple[str, str] | None,
        started: float,
    ) -> list[bytes]:
        """The reply's frames, counted, logged and (a write with an idempotency key)
        remembered."""
        reply = protocol.pack(body, self.settings.zmq_compress_bytes if compress else None)
        with self._lock:
            self.requests[action] += 1
            if code != "OK":
                self.errors[code] += 1
            elif idem is not None:
                self._done[idem] = (time.monotonic() + _IDEMPOTENT_TTL_S, reply)
                while len(self._done) > _IDEMPOTENT_KEEP:
                    self._done.popitem(last=False)
        if log.isEnabledFor(logging.INFO):
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
        self._take(key)
        return Principal(key)

    def _take(self, key: ApiKey) -> None:
        """Count a request against its key's rate limit (raises `RateLimitedError`)."""
        self.rate_limiter.admit(key, self.settings.rate_per_minute)

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


def _delimiter(frames: list[bytes]) -> int | None:
    """Where a REQ client's message starts: just past the empty frame that ends the
    routing envelope (None: no envelope, not a REQ client's message)."""
    for n, frame in enumerate(frames):
        if not frame:
            return n + 1
    return None


__all__ = ["Orchestrator"]
