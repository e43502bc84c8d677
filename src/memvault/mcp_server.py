"""memvault as a Model Context Protocol server (`memvault mcp`, docs/mcp.md).

Tools: `remember`, `recall`, `get_context`, `forget`, `list_memories`, `update_memory`,
`memory_history`; resources: the user's profile and summary. Built on the official SDK's
`MCPServer`, over stdio or streamable HTTP.

Who the tools act for is never the model's choice when it is fixed:
- a user API key (`MEMVAULT_MCP_API_KEY` over stdio, the request's key over HTTP) fixes its
  user;
- otherwise `--user` / `MEMVAULT_MCP_USER` fixes it;
- only an admin key (or a local stdio server with neither) lets a tool's `user_id` name
  the user, and then it must.
A tool naming another user than the fixed one gets `PERMISSION_DENIED`.

Every failure is a tool result with `isError` set and the same error object as the other
doors (`{"error": {"code", "message", "details"}}`); the server keeps serving.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from memvault import __version__
from memvault.client import AsyncMemVault
from memvault.errors import (
    ErrorCode,
    InvalidArgumentError,
    MemvaultError,
    NotFoundError,
    PermissionDeniedError,
)
from memvault.models import Memory, SearchHit
from memvault.service.access import ME, Principal, RateLimiter, secret_from_headers

FORGET_TOKEN_TTL_S = 300.0  # how long a `forget` by query waits for its confirmation
FORGET_MAX_MATCHES = 20  # memories one `forget` by query may name
_PENDING_MAX = 1_000  # confirmations waiting at once (the oldest give way)

INSTRUCTIONS = """\
memvault keeps long-term memory about the user across conversations.
- Call `recall` (or `get_context`) before answering when earlier conversations may matter.
- Call `remember` when the user states a lasting fact, preference, plan or decision; one
  fact per call, in the user's own terms.
- Use `update_memory` when a stored memory is wrong or out of date; `memory_history` shows
  its earlier versions.
- `forget` by query lists what would be deleted and needs a second call to confirm.
"""

UserArg = Annotated[
    str | None,
    Field(
        description="The user whose memories to use. Leave it out: the server's key or "
        "configuration fixes the user; only an admin connection names one."
    ),
]

NamespacesArg = Annotated[list[str] | None, Field(description="Only these namespaces.")]
TypesArg = Annotated[list[str] | None, Field(description="Only these memory types.")]
TagsArg = Annotated[list[str] | None, Field(description="Any of these tags.")]


@dataclass
class _Pending:
    user_id: str
    memory_ids: list[str]
    expires: float


@dataclass
class McpDoor:
    """The state the tools share: the vault, how a call's principal is found, the user
    fixed by configuration, and `forget` confirmations waiting."""

    vault: AsyncMemVault
    principal_of: Callable[[Context | None], Awaitable[Principal]]
    fixed_user: str | None = None
    static: bool = False  # the principal is the connection's, not each request's
    pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)

    async def user(self, ctx: Context | None, named: str | None) -> tuple[str, str]:
        """(user id, actor) of a tool call (`named` "me": the caller's own user)."""
        if named == ME:
            named = None
        principal = await self.principal_of(ctx)
        own = None if principal.key is None else principal.key.user_id
        if own is None and self.fixed_user is not None:
            if named is not None and named != self.fixed_user:
                raise PermissionDeniedError(
                    "this MCP server acts only for its configured user", {"user_id": named}
                )
            return self.fixed_user, principal.actor
        return principal.user(named), principal.actor

    def hold(self, user_id: str, memory_ids: list[str]) -> str:
        now = time.monotonic()
        for token, p in list(self.pending.items()):
            if p.expires < now:
                del self.pending[token]
        while len(self.pending) >= _PENDING_MAX:
            self.pending.popitem(last=False)
        token = secrets.token_urlsafe(16)
        self.pending[token] = _Pending(user_id, memory_ids, now + FORGET_TOKEN_TTL_S)
        return token

    def take(self, user_id: str, token: str) -> list[str]:
        p = self.pending.get(token)
        if p is None or p.user_id != user_id or p.expires < time.monotonic():
            raise NotFoundError(
                "no pending forget with this confirm_token (it expires after "
                f"{int(FORGET_TOKEN_TTL_S)} s): call forget with the query again",
                {"field": "confirm_token"},
            )
        del self.pending[token]
        return p.memory_ids


def _ok(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))],
        structured_content=data,
    )


def _error(exc: MemvaultError) -> CallToolResult:
    data = {"error": exc.to_dict()}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))],
        structured_content=data,
        is_error=True,
    )


def _memory(m: Memory) -> dict[str, Any]:
    return m.model_dump(mode="json")


def _hit(h: SearchHit) -> dict[str, Any]:
    out = {"memory": _memory(h.memory), "score": round(h.score, 6)}
    if h.explain is not None:
        out["explain"] = {k: round(v, 6) for k, v in h.explain.items()}
    return out


def _filters(**given: Any) -> dict[str, Any]:
    """A search or listing filter from tool arguments (`tags`: any of them); the service
    checks it, times included (`INVALID_ARGUMENT` for a malformed one)."""
    return {("tags_any" if k == "tags" else k): v for k, v in given.items() if v not in (None, [])}


Tool = Callable[..., Awaitable[CallToolResult]]


def _guarded(fn: Tool) -> Tool:
    """A tool whose memvault errors become error results."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except MemvaultError as exc:
            return _error(exc)

    return run


def _read_guarded(fn: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    """A resource whose memvault errors reach the client as a JSON-RPC error carrying the
    same error object (`data.error`) as a tool's."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> str:
        try:
            return await fn(*args, **kwargs)
        except MemvaultError as exc:
            invalid = exc.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.NOT_FOUND)
            raise MCPError(
                INVALID_PARAMS if invalid else INTERNAL_ERROR,
                f"{exc.code.value}: {exc.message}",
                {"error": exc.to_dict()},
            ) from None

    return run


def _resources(
    server: MCPServer, door: McpDoor, part: str, about: str, read: Callable[[str], Awaitable[str]]
) -> None:
    """`memvault://users/{user_id}/<part>` ('me': the connection's own user) and, when the
    connection has one principal (stdio), `memvault://<part>`."""
    if door.static:

        @server.resource(
            f"memvault://{part}",
            name=part,
            description=f"The user's {about} (JSON).",
            mime_type="application/json",
        )
        @_read_guarded
        async def mine() -> str:
            uid, _ = await door.user(None, None)
            return await read(uid)

    @server.resource(
        f"memvault://users/{{user_id}}/{part}",
        name=f"user_{part}",
        description=f"A user's {about} (JSON); 'me' names the connection's own user.",
        mime_type="application/json",
    )
    @_read_guarded
    async def theirs(user_id: str, ctx: Context) -> str:
        uid, _ = await door.user(ctx, user_id)
        return await read(uid)


def build_server(door: McpDoor) -> MCPServer:
    """The MCP server of `door`: its tools and resources."""
    server: MCPServer = MCPServer(
        "memvault",
        title="memvault",
        description="Long-term memory for AI assistants",
        instructions=INSTRUCTIONS,
        version=__version__,
    )
    vault = door.vault
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

    @server.tool(
        description="Store something to remember about the user. kind='fact' stores a "
        "fact about the user (the same fact again updates the stored one); kind='memory' "
        "stores a memory with optional namespace, key, tags and metadata.",
        annotations=writes,
    )
    @_guarded
    async def remember(
        ctx: Context,
        content: Annotated[str, Field(description="What to remember, as a full sentence.")],
        kind: Annotated[
            Literal["memory", "fact"], Field(description="'fact' or 'memory'.")
        ] = "memory",
        category: Annotated[
            str | None, Field(description="For facts: a category such as 'food' or 'work'.")
        ] = None,
        namespace: Annotated[str | None, Field(description="Namespace (memories).")] = None,
        key: Annotated[
            str | None, Field(description="A unique key in the namespace (memories).")
        ] = None,
        memory_type: Annotated[
            str | None, Field(description="A type such as 'preference' or 'event'.")
        ] = None,
        tags: Annotated[list[str] | None, Field(description="Tags.")] = None,
        importance: Annotated[
            float | None, Field(ge=0, le=1, description="0 to 1; left out, derived.")
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="JSON object stored with it.")
        ] = None,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, actor = await door.user(ctx, user_id)
        if kind == "fact":
            m = await vault.add_user_fact(
                uid, content, category, importance=importance, metadata=metadata, actor=actor
            )
        else:
            m = await vault.add(
                uid,
                content,
                namespace=namespace,
                key=key,
                memory_type=memory_type,
                tags=tags,
                category=category,
                importance=importance,
                metadata=metadata,
                actor=actor,
            )
        return _ok({"memory": _memory(m)})

    @server.tool(
        description="Search the user's memories by meaning and keywords; best first. "
        "Filters narrow by namespace, type, tag, importance and creation time.",
        annotations=read_only,
    )
    @_guarded
    async def recall(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for.")],
        k: Annotated[int, Field(ge=1, le=100, description="How many memories.")] = 5,
        namespaces: NamespacesArg = None,
        memory_types: TypesArg = None,
        tags: TagsArg = None,
        min_importance: Annotated[float | None, Field(ge=0, le=1)] = None,
        created_after: Annotated[str | None, Field(description="ISO-8601 time.")] = None,
        created_before: Annotated[str | None, Field(description="ISO-8601 time.")] = None,
        explain: Annotated[bool, Field(description="Add each hit's score parts.")] = False,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, _ = await door.user(ctx, user_id)
        f = _filters(
            namespaces=namespaces,
            memory_types=memory_types,
            tags=tags,
            min_importance=min_importance,
            created_after=created_after,
            created_before=created_before,
        )
        hits = await vault.search(uid, query, k=k, filters=f, explain=explain)
        return _ok({"hits": [_hit(h) for h in hits]})

    @server.tool(
        description="The context block for answering a message: the user's summary, the "
        "memories most relevant to it and recent conversation, within a token budget.",
        annotations=read_only,
    )
    @_guarded
    async def get_context(
        ctx: Context,
        message: Annotated[str, Field(description="The message to answer.")],
        k: Annotated[int, Field(ge=1, le=50, description="Memories at most.")] = 8,
        token_budget: Annotated[int | None, Field(ge=100, le=1_000_000)] = None,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, _ = await door.user(ctx, user_id)
        built = await vault.context(uid, message, k=k, token_budget=token_budget)
        system = [m.content for m in built.messages if m.role == "system"]
        return _ok(
            {
                "context": "\n\n".join(system),
                "memory_ids": built.memory_ids,
                "token_estimate": built.token_estimate,
                "messages": [m.model_dump(mode="json") for m in built.messages],
            }
        )

    @server.tool(
        description="Forget memories (soft delete: they can be restored). By memory_id "
        "at once; by query in two steps: the first call lists the matches and returns a "
        "confirm_token, a second call with confirm_token deletes exactly those.",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, open_world_hint=False
        ),
    )
    @_guarded
    async def forget(
        ctx: Context,
        memory_id: Annotated[str | None, Field(description="The memory to forget.")] = None,
        query: Annotated[
            str | None, Field(description="Find what to forget by this search.")
        ] = None,
        k: Annotated[int, Field(ge=1, le=FORGET_MAX_MATCHES)] = 5,
        min_score: Annotated[
            float, Field(ge=0, description="Matches below this score are left out.")
        ] = 0.0,
        confirm_token: Annotated[
            str | None, Field(description="From the first call: delete what it listed.")
        ] = None,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, actor = await door.user(ctx, user_id)
        given = [x is not None for x in (memory_id, query, confirm_token)]
        if sum(given) != 1:
            raise InvalidArgumentError("give exactly one of memory_id, query, confirm_token")
        if memory_id is not None:
            m = await vault.delete(uid, memory_id, actor=actor)
            return _ok({"forgotten": [_memory(m)]})
        if query is not None:
            hits = [h for h in await vault.search(uid, query, k=k) if h.score >= min_score]
            if not hits:
                return _ok({"matches": [], "confirm_token": None})
            token = door.hold(uid, [h.memory.memory_id for h in hits])
            return _ok(
                {
                    "matches": [_hit(h) for h in hits],
                    "confirm_token": token,
                    "expires_in_s": int(FORGET_TOKEN_TTL_S),
                    "note": "nothing is deleted yet: call forget with this confirm_token",
                }
            )
        assert confirm_token is not None
        gone, missing = [], []
        for mid in door.take(uid, confirm_token):
            try:
                gone.append(_memory(await vault.delete(uid, mid, actor=actor)))
            except NotFoundError:
                missing.append(mid)  # deleted meanwhile
        return _ok({"forgotten": gone, "already_gone": missing})

    @server.tool(
        description="List the user's memories, newest first, with optional filters; pass "
        "next_cursor back as cursor for the next page.",
        annotations=read_only,
    )
    @_guarded
    async def list_memories(
        ctx: Context,
        namespaces: NamespacesArg = None,
        memory_types: TypesArg = None,
        tags: TagsArg = None,
        order: Annotated[
            Literal["created_desc", "created_asc", "importance_desc", "updated_desc"],
            Field(description="Sort order."),
        ] = "created_desc",
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        cursor: Annotated[str | None, Field(description="From the last page.")] = None,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, _ = await door.user(ctx, user_id)
        f = _filters(namespaces=namespaces, memory_types=memory_types, tags=tags)
        page = await vault.list_memories(uid, filters=f, order=order, limit=limit, cursor=cursor)
        return _ok({"memories": [_memory(m) for m in page.items], "next_cursor": page.next_cursor})

    @server.tool(
        description="Correct a stored memory: new content, importance, tags or metadata. "
        "Its earlier version stays in its history.",
        annotations=writes,
    )
    @_guarded
    async def update_memory(
        ctx: Context,
        memory_id: Annotated[str, Field(description="The memory to change.")],
        content: Annotated[str | None, Field(description="New content.")] = None,
        importance: Annotated[float | None, Field(ge=0, le=1)] = None,
        tags: Annotated[list[str] | None, Field(description="New tags (replace).")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="New metadata.")] = None,
        expected_version: Annotated[
            int | None, Field(description="Fail if the memory changed since this version.")
        ] = None,
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, actor = await door.user(ctx, user_id)
        patch = {
            name: value
            for name, value in (
                ("content", content),
                ("importance", importance),
                ("tags", tags),
                ("metadata", metadata),
            )
            if value is not None
        }
        m = await vault.update(
            uid, memory_id, patch, expected_version=expected_version, actor=actor
        )
        return _ok({"memory": _memory(m)})

    @server.tool(
        description="Every version of a memory, oldest first: what changed, when, by whom.",
        annotations=read_only,
    )
    @_guarded
    async def memory_history(
        ctx: Context,
        memory_id: Annotated[str, Field(description="The memory.")],
        user_id: UserArg = None,
    ) -> CallToolResult:
        uid, _ = await door.user(ctx, user_id)
        entries = await vault.history(uid, memory_id)
        if not entries:
            raise NotFoundError(f"no memory {memory_id!r}", {"memory_id": memory_id})
        return _ok({"history": [e.model_dump(mode="json") for e in entries]})

    async def profile_of(uid: str) -> str:
        try:
            user: dict[str, Any] | None = (await vault.get_user(uid)).model_dump(mode="json")
        except NotFoundError:
            user = None  # nothing stored for this user yet
        metrics = await vault.get_metrics(uid)
        facts = await vault.get_user_facts(uid)
        return json.dumps(
            {
                "user": user,
                "metrics": metrics.model_dump(mode="json"),
                "facts": [{"fact": f.text, "category": f.category} for f in facts],
            },
            ensure_ascii=False,
        )

    async def summary_of(uid: str) -> str:
        summary = await vault.get_summary(uid)
        return json.dumps(
            {
                "user_id": uid,
                "summary": None if summary is None else summary.content,
                "updated_at": None if summary is None else summary.updated_at.isoformat(),
            },
            ensure_ascii=False,
        )

    for part, about, read in (
        ("profile", "profile, usage metrics and facts", profile_of),
        ("summary", "memory summary", summary_of),
    ):
        _resources(server, door, part, about, read)

    return server


# --------------------------------------------------------------------------- principals
def fixed_principal(principal: Principal) -> Callable[[Context | None], Awaitable[Principal]]:
    """Every call acts as `principal` (stdio: one client, one key or none)."""

    async def of(_ctx: Context | None) -> Principal:
        return principal

    return of


def header_principal(vault: AsyncMemVault) -> Callable[[Context | None], Awaitable[Principal]]:
    """Each call acts as the API key of its HTTP request (checked again at the gate)."""

    async def of(ctx: Context | None) -> Principal:
        if vault.settings.auth_disabled:
            return Principal(None)
        if ctx is None:
            raise InvalidArgumentError("an HTTP request names its user by its API key")
        headers: Mapping[str, str] = {k.lower(): v for k, v in (ctx.headers or {}).items()}
        return Principal(await vault.authenticate(secret_from_headers(headers)))

    return of


class KeyGate:
    """ASGI middleware of `memvault mcp --http`: a request passes REST's caller check (its
    key, the key's rate limit) or is answered 401 / 429 with the REST error envelope
    before it reaches the MCP session."""

    def __init__(self, app: Any, vault: AsyncMemVault) -> None:
        self.app = app
        self.vault = vault  # with `rate_limiter`: the state `caller_of` reads
        self.rate_limiter = RateLimiter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from memvault.api.auth import caller_of
        from memvault.api.errors import envelope

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            await caller_of(self, headers, scope)
        except MemvaultError as exc:
            extra = None
            if "retry_after_s" in exc.details:
                extra = {"Retry-After": str(exc.details["retry_after_s"])}
            await envelope(exc.code, exc.message, exc.details, None, headers=extra)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)
