"""The web console at `/ui` (served by `memvault serve`; docs/console.md).

Server-rendered pages (Jinja2) with plain forms and no script: every action is a POST that
redirects back (so a reload never repeats it), works from the keyboard and a screen reader,
and needs nothing from the internet. The growth chart is inline SVG drawn here.

Signing in takes an API key, kept in an HttpOnly, SameSite=Strict cookie scoped to `/ui`
and checked on every request as REST checks it (a revoked key is out within
`auth_cache_s`). An admin key sees every user; a user key sees its own user only. Forms
carry a token derived from the key, and a POST from another origin is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from memvault.api.auth import caller_of
from memvault.api.errors import STATUS
from memvault.client import AsyncMemVault
from memvault.errors import (
    InvalidArgumentError,
    MemvaultError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from memvault.models import Memory, Page, User, content_text
from memvault.service.access import Principal
from memvault.service.search import Mode

COOKIE = "memvault_console"
PREFIX = "/ui"
PAGE = 50  # memories a listing page shows
HISTORY_SHOWN = 50  # conversation messages the user page shows
GROWTH_DAYS = 30

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_env = Environment(
    loader=PackageLoader("memvault.console", "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
_CSS = files("memvault.console").joinpath("static/console.css").read_bytes()
_CSS_TAG = hashlib.sha256(_CSS).hexdigest()[:12]


# --------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class Viewer:
    """Who is looking: the principal of the cookie's key, and the form token."""

    principal: Principal
    csrf: str

    @property
    def admin(self) -> bool:
        return self.principal.admin

    @property
    def own_user(self) -> str | None:
        key = self.principal.key
        return None if key is None else key.user_id

    @property
    def actor(self) -> str:
        return self.principal.actor


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


def _csrf(secret: str) -> str:
    return hmac.new(secret.encode(), b"memvault console form", hashlib.sha256).hexdigest()[:32]


def _vault(request: Request) -> AsyncMemVault:
    vault: AsyncMemVault = request.app.state.vault
    return vault


async def _viewer(request: Request) -> Viewer:
    vault = _vault(request)
    if vault.settings.auth_disabled:
        return Viewer(Principal(None), _csrf("auth disabled"))
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise _Redirect(f"{PREFIX}/login?next={quote(_here(request))}")
    try:  # as REST checks a key: the key, its rate limit, the key id in the access log
        who = await caller_of(request.app.state, {"x-api-key": secret}, request.scope)
    except UnauthenticatedError:
        raise _Redirect(f"{PREFIX}/login?expired=1") from None
    return Viewer(Principal(who.key), _csrf(secret))


def _here(request: Request) -> str:
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def _safe_next(value: str | None) -> str:
    """Only a path of this console (no open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
        return value
    return PREFIX + "/"


async def _form(request: Request, viewer: Viewer | None) -> dict[str, str]:
    """The POSTed form; refuses another origin and, once signed in, a wrong form token."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise PermissionDeniedError("a form from another site was refused")
    body = (await request.body()).decode("utf-8", "replace")
    form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
    if viewer is not None and not hmac.compare_digest(form.get("csrf", ""), viewer.csrf):
        raise PermissionDeniedError("the form expired; reload the page and try again")
    return form


def seg(user_id: str) -> str:
    """A user id as one URL path segment. Ids with '/' or '%' (which the router would split
    or decode) and ids starting with '~' travel as '~' + URL-safe base64."""
    if "/" in user_id or "%" in user_id or user_id.startswith("~"):
        return "~" + base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    return quote(user_id, safe="")


def unseg(segment: str) -> str:
    if not segment.startswith("~"):
        return segment
    try:
        return base64.urlsafe_b64decode(segment[1:] + "=" * (-len(segment[1:]) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError("this user address is malformed") from None


def _user_of(viewer: Viewer, user_id: str) -> str:
    """The user a page shows (from its path segment): a user key sees only its own."""
    return viewer.principal.user(unseg(user_id))


def _render(
    request: Request, viewer: Viewer | None, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    template = _env.get_template(name)
    html = template.render(
        viewer=viewer,
        prefix=PREFIX,
        css=f"{PREFIX}/static/console.css?v={_CSS_TAG}",
        flash=_flash(request.query_params.get("done")),
        q=quote,
        seg=seg,
        text=_text,
        when=_when,
        **context,
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' "
            "data:; form-action 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def _text(value: Any, limit: int | None = None) -> str:
    t = content_text(value) if isinstance(value, str | dict) else str(value)
    return t if limit is None or len(t) <= limit else t[: limit - 1] + "…"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M UTC")


# What an action says after its redirect: a code and numbers travel in the URL, never text
# (a crafted link cannot make the console say something of its own).
_FLASH = {
    "unchanged": "Nothing changed.",
    "saved": "Saved as version {0}.",
    "deleted": "Deleted. It can be restored below.",
    "restored": "Restored as version {0}.",
    "reverted": "Reverted to version {0}, saved as version {1}.",
}


def _flash(done: str | None) -> str | None:
    if not done:
        return None
    code, *numbers = done.split(":")
    template = _FLASH.get(code)
    if template is None or len(numbers) != template.count("{"):
        return None
    if not all(n.isdigit() and len(n) < 10 for n in numbers):
        return None
    return template.format(*numbers)


def _back(path: str, code: str, *numbers: int) -> RedirectResponse:
    done = ":".join([code, *(str(n) for n in numbers)])
    return RedirectResponse(f"{path}?{urlencode({'done': done})}", status_code=303)


async def _page(request: Request, build: Any) -> Response:
    """Run a page: sign-in redirects, and memvault errors shown as an error page."""
    viewer: Viewer | None = None
    try:
        viewer = await _viewer(request)
        response: Response = await build(viewer)
        return response
    except _Redirect as r:
        return RedirectResponse(r.to, status_code=303)
    except MemvaultError as exc:
        return _render(request, viewer, "error.html", status=STATUS[exc.code], error=exc)


# --------------------------------------------------------------------------- sign in
@router.get("/login")
async def login_form(request: Request) -> Response:
    return _render(
        request,
        None,
        "login.html",
        next=_safe_next(request.query_params.get("next")),
        expired=request.query_params.get("expired") == "1",
    )


@router.post("/login")
async def login(request: Request) -> Response:
    vault = _vault(request)
    try:
        form = await _form(request, None)
        secret = form.get("key", "").strip()
        if not secret:
            raise UnauthenticatedError("paste an API key (memvault keys create)")
        await vault.authenticate(secret)
    except MemvaultError as exc:
        return _render(request, None, "login.html", status=401, error=exc, next=_safe_next(None))
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/static/console.css")
async def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})


# --------------------------------------------------------------------------- dashboard
def _chart(days: list[tuple[str, int]]) -> dict[str, Any]:
    """Bars of an inline SVG: memories created per day."""
    top = max((n for _, n in days), default=0)
    scale = 1 if top == 0 else 10 ** math.floor(math.log10(top))
    ceiling = max(1, math.ceil(top / scale) * scale)
    width, height, gap = 18, 120, 4
    bars = [
        {
            "x": i * (width + gap),
            "h": round(height * n / ceiling, 1),
            "y": round(height - height * n / ceiling, 1),
            "day": d,
            "n": n,
        }
        for i, (d, n) in enumerate(days)
    ]
    return {
        "bars": bars,
        "width": len(days) * (width + gap),
        "height": height,
        "bar": width,
        "ceiling": ceiling,
        "total": sum(n for _, n in days),
    }


def _latency(samples: list[float]) -> dict[str, Any] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered) * 1000,
        "p95": p95 * 1000,
    }


@router.get("/")
async def dashboard(request: Request) -> Response:
    async def build(viewer: Viewer) -> Response:
        vault = _vault(request)
        scope = None if viewer.admin else viewer.own_user
        stats = await vault.stats(scope, days=GROWTH_DAYS)
        cache = vault.query_cache
        hits = 0 if cache is None else cache.hits
        misses = 0 if cache is None else cache.misses
        jobs = await vault.job_counts(scope)
        metrics = request.app.state.metrics
        return _render(
            request,
            viewer,
            "dashboard.html",
            stats=stats,
            chart=_chart(stats.created_by_day),
            cache={
                "hits": hits,
                "misses": misses,
                "rate": None if hits + misses == 0 else hits / (hits + misses),
            },
            latency=_latency(list(metrics.recent_searches)),
            jobs=jobs,
            embedder=vault.embedder.name if vault.embedder is not None else None,
            scope=scope,
        )

    return await _page(request, build)


# --------------------------------------------------------------------------- users
@router.get("/users")
async def users(request: Request) -> Response:
    async def build(viewer: Viewer) -> Response:
        if not viewer.admin:
            raise _Redirect(f"{PREFIX}/users/{seg(viewer.own_user or '')}")
        after = request.query_params.get("after") or None
        listed = await _vault(request).list_users(limit=PAGE + 1, after=after)
        more = len(listed) > PAGE
        listed = listed[:PAGE]
        return _render(
            request,
            viewer,
            "users.html",
            users=listed,
            next_after=listed[-1].user_id if more and listed else None,
        )

    return await _page(request, build)


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str) -> Response:
    async def build(viewer: Viewer) -> Response:
        vault = _vault(request)
        uid = _user_of(viewer, user_id)
        try:
            user: User | None = await vault.get_user(uid)
        except NotFoundError:
            if viewer.admin:
                raise
            user = None  # a user key whose user has nothing stored yet
        facts = await vault.get_user_facts(uid)
        by_category: dict[str, list[Memory]] = {}
        for f in facts:
            by_category.setdefault(f.category or "uncategorised", []).append(f)
        return _render(
            request,
            viewer,
            "user.html",
            uid=uid,
            user=user,
            metrics=await vault.get_metrics(uid),
            summary=await vault.get_summary(uid),
            facts=dict(sorted(by_category.items())),
            sessions=await vault.list_sessions(uid, limit=50),
            messages=await vault.get_message_history(uid, limit=HISTORY_SHOWN),
            stats=await vault.stats(uid, days=GROWTH_DAYS),
        )

    return await _page(request, build)


# --------------------------------------------------------------------------- memories
_ORDERS = ("created_desc", "created_asc", "importance_desc", "updated_desc")
_MODES: tuple[Mode, ...] = ("hybrid", "lexical", "vector")
_MODES_BY_NAME: dict[str, Mode] = {m: m for m in _MODES}


def _listing_filters(params: Mapping[str, str]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if params.get("namespace"):
        f["namespaces"] = [params["namespace"]]
    if params.get("type"):
        f["memory_types"] = [params["type"]]
    if params.get("tag"):
        f["tags_any"] = [params["tag"]]
    if params.get("session"):
        f["session_id"] = params["session"]
    if params.get("deleted") == "1":
        f["include_deleted"] = True
    if params.get("min_importance"):
        try:
            f["min_importance"] = float(params["min_importance"])
        except ValueError:
            raise InvalidArgumentError("minimum importance must be a number from 0 to 1") from None
    return f


@router.get("/users/{user_id}/memories")
async def memories(request: Request, user_id: str) -> Response:
    async def build(viewer: Viewer) -> Response:
        vault = _vault(request)
        uid = _user_of(viewer, user_id)
        params = dict(request.query_params)
        f = _listing_filters(params)
        query = params.get("query", "").strip()
        order = params.get("order", "")
        order = order if order in _ORDERS else "created_desc"
        mode: Mode = _MODES_BY_NAME.get(params.get("mode", ""), "hybrid")
        hits = page = None
        elapsed = None
        if query:
            started = time.perf_counter()
            f.pop("include_deleted", None)  # search finds live memories only
            hits = await vault.search(uid, query, k=20, filters=f, mode=mode, explain=True)
            elapsed = time.perf_counter() - started
            request.app.state.metrics.record_search(mode, elapsed)
        else:
            try:
                page = await vault.list_memories(
                    uid, filters=f, order=order, limit=PAGE, cursor=params.get("cursor") or None
                )
            except NotFoundError:
                if viewer.admin:
                    raise
                page = Page(items=[])  # a user key whose user has nothing stored yet
        kept = {k: v for k, v in params.items() if k not in ("cursor", "done") and v}
        return _render(
            request,
            viewer,
            "memories.html",
            uid=uid,
            params=params,
            query=query,
            order=order,
            mode=mode,
            orders=_ORDERS,
            modes=_MODES,
            hits=hits,
            page=page,
            elapsed_ms=None if elapsed is None else elapsed * 1000,
            next_url=(
                None
                if page is None or page.next_cursor is None
                else "?" + urlencode({**kept, "cursor": page.next_cursor})
            ),
        )

    return await _page(request, build)


@router.get("/users/{user_id}/memories/{memory_id}")
async def memory_page(request: Request, user_id: str, memory_id: str) -> Response:
    async def build(viewer: Viewer) -> Response:
        uid = _user_of(viewer, user_id)
        vault = _vault(request)
        memory = await vault.inspect(uid, memory_id)  # looking is not an access
        history = await vault.history(uid, memory_id)
        return _render(
            request,
            viewer,
            "memory.html",
            uid=uid,
            m=memory,
            history=list(reversed(history)),
            tags=", ".join(memory.tags),
        )

    return await _page(request, build)


@router.post("/users/{user_id}/memories/{memory_id}/{action}")
async def memory_action(request: Request, user_id: str, memory_id: str, action: str) -> Response:
    async def build(viewer: Viewer) -> Response:
        vault = _vault(request)
        uid = _user_of(viewer, user_id)
        form = await _form(request, viewer)
        here = f"{PREFIX}/users/{seg(uid)}/memories/{quote(memory_id, safe='')}"
        actor = viewer.actor
        expected = _int(form.get("version"), "version")
        if action == "edit":
            patch: dict[str, Any] = {}
            if "content" in form:
                patch["content"] = form["content"].replace("\r\n", "\n")
            if form.get("importance", "") != "":
                try:
                    patch["importance"] = float(form["importance"])
                except ValueError:
                    raise InvalidArgumentError(
                        "importance must be a number from 0 to 1", {"field": "importance"}
                    ) from None
            if "tags" in form:
                patch["tags"] = [t.strip() for t in form["tags"].split(",") if t.strip()]
            # The service leaves a memory the patch would not change as it is (no new version).
            m = await vault.update(uid, memory_id, patch, expected_version=expected, actor=actor)
            if m.version == expected:
                return _back(here, "unchanged")
            return _back(here, "saved", m.version)
        if action == "delete":
            await vault.delete(uid, memory_id, expected_version=expected, actor=actor)
            return _back(here, "deleted")
        if action == "restore":
            m = await vault.restore(uid, memory_id, actor=actor)
            return _back(here, "restored", m.version)
        if action == "revert":
            to = _int(form.get("to"), "to")
            if to is None:
                raise InvalidArgumentError("which version to revert to?", {"field": "to"})
            m = await vault.revert(uid, memory_id, to, actor=actor)
            return _back(here, "reverted", to, m.version)
        raise NotFoundError(f"no action {action!r}")

    return await _page(request, build)


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"{name} must be a whole number", {"field": name}) from None


__all__ = ["COOKIE", "PREFIX", "router"]
