"""`memvault mcp` driven by the official MCP SDK's client: over stdio (the server is a
subprocess the client starts) and over streamable HTTP (a `memvault mcp --http` process on
127.0.0.1), on a real SQLite file with the real embedder. Every tool, bad arguments (an
error result; the server keeps serving), and keys that try to reach another user."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from memvault import MemVault, Settings
from tests.integration.rest_helpers import free_port

TOOLS = {
    "remember",
    "recall",
    "get_context",
    "forget",
    "list_memories",
    "update_memory",
    "memory_history",
}


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVAULT_MCP_")}
    return {**env, "MEMVAULT_DATABASE_URL": f"sqlite:///{db}", **extra}


def _stdio(db: Path, *args: str, **extra: str) -> Client:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memvault", "mcp", *args], env=_env(db, **extra)
    )
    return Client(params, read_timeout_seconds=120)


def _data(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


def _ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result
    return _data(result)


def _err(result: CallToolResult) -> str:
    assert result.is_error, result
    code: str = _data(result)["error"]["code"]
    return code


async def test_every_tool_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "mv.db"
    async with _stdio(db, "--user", "alice") as c:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        for tool in (await c.list_tools()).tools:
            assert tool.description
            assert tool.input_schema["type"] == "object"
        tea = _ok(await c.call_tool("remember", {"content": "I drink green tea every morning"}))
        assert tea["memory"]["user_id"] == "alice"
        fact = _ok(
            await c.call_tool(
                "remember",
                {"content": "Allergic to peanuts", "kind": "fact", "category": "health"},
            )
        )
        again = _ok(
            await c.call_tool(
                "remember",
                {"content": "allergic to  PEANUTS", "kind": "fact", "category": "health"},
            )
        )
        assert again["memory"]["memory_id"] == fact["memory"]["memory_id"]  # no duplicate
        _ok(
            await c.call_tool(
                "remember",
                {"content": "Flying to Lisbon in May", "tags": ["travel"], "importance": 0.9},
            )
        )
        hits = _ok(await c.call_tool("recall", {"query": "what does she drink?", "explain": True}))
        assert hits["hits"][0]["memory"]["memory_id"] == tea["memory"]["memory_id"]
        assert set(hits["hits"][0]["explain"]) >= {"vector", "lexical", "importance"}
        travel = _ok(await c.call_tool("recall", {"query": "trip", "tags": ["travel"]}))
        assert [h["memory"]["content"] for h in travel["hits"]] == ["Flying to Lisbon in May"]
        ctx = _ok(await c.call_tool("get_context", {"message": "Any food I should avoid?"}))
        assert "peanuts" in ctx["context"].lower()
        assert fact["memory"]["memory_id"] in ctx["memory_ids"]
        listed = _ok(await c.call_tool("list_memories", {"limit": 2}))
        assert len(listed["memories"]) == 2
        assert listed["next_cursor"]
        rest = _ok(await c.call_tool("list_memories", {"cursor": listed["next_cursor"]}))
        assert len(rest["memories"]) == 1
        changed = _ok(
            await c.call_tool(
                "update_memory",
                {"memory_id": tea["memory"]["memory_id"], "content": "I drink oolong now"},
            )
        )
        assert changed["memory"]["version"] == 2
        history = _ok(
            await c.call_tool("memory_history", {"memory_id": tea["memory"]["memory_id"]})
        )
        assert [h["snapshot"]["content"] for h in history["history"]] == [
            "I drink green tea every morning",
            "I drink oolong now",
        ]
        # forget by query: nothing goes before the confirmation.
        asked = _ok(await c.call_tool("forget", {"query": "Lisbon trip", "k": 1}))
        assert [m["memory"]["content"] for m in asked["matches"]] == ["Flying to Lisbon in May"]
        assert len(_ok(await c.call_tool("list_memories", {}))["memories"]) == 3
        assert _err(await c.call_tool("forget", {"confirm_token": "made-up"})) == "NOT_FOUND"
        gone = _ok(await c.call_tool("forget", {"confirm_token": asked["confirm_token"]}))
        assert [m["content"] for m in gone["forgotten"]] == ["Flying to Lisbon in May"]
        assert _err(await c.call_tool("forget", {"confirm_token": asked["confirm_token"]})) == (
            "NOT_FOUND"  # a token confirms once
        )
        by_id = _ok(await c.call_tool("forget", {"memory_id": tea["memory"]["memory_id"]}))
        assert by_id["forgotten"][0]["deleted_at"] is not None
        left = _ok(await c.call_tool("list_memories", {}))
        assert [m["content"] for m in left["memories"]] == ["Allergic to peanuts"]
        # Resources: the configured user's profile and summary.
        listed_res = {str(r.uri) for r in (await c.list_resources()).resources}
        assert listed_res == {"memvault://profile", "memvault://summary"}
        profile = json.loads((await c.read_resource("memvault://profile")).contents[0].text)  # type: ignore[union-attr]
        assert profile["user"]["user_id"] == "alice"
        assert profile["facts"] == [{"fact": "Allergic to peanuts", "category": "health"}]
        summary = json.loads((await c.read_resource("memvault://summary")).contents[0].text)  # type: ignore[union-attr]
        assert summary == {"user_id": "alice", "summary": None, "updated_at": None}
        same = json.loads(
            (await c.read_resource("memvault://users/me/profile")).contents[0].text  # type: ignore[union-attr]
        )
        assert same == profile
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}")) as v:
        assert v.count("alice") == 1  # what the tools did is in the store


async def test_bad_arguments_are_error_results_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    async with _stdio(tmp_path / "mv.db", "--user", "alice") as c:
        bad = [
            ("recall", {}),  # missing query
            ("recall", {"query": "tea", "k": "lots"}),
            ("recall", {"query": "tea", "k": 0}),
            ("remember", {"content": "x", "importance": 3}),
            ("remember", {"content": "x", "kind": "poem"}),
            ("list_memories", {"order": "sideways"}),
            ("nope", {}),
        ]
        for name, args in bad:
            result = await c.call_tool(name, args)
            assert result.is_error, (name, args, result)
        # memvault's own checks answer with its error codes.
        assert _err(await c.call_tool("recall", {"query": "   "})) == "INVALID_ARGUMENT"
        assert _err(await c.call_tool("remember", {"content": "a\x00b"})) == "INVALID_ARGUMENT"
        assert _err(await c.call_tool("remember", {"content": "x" * 200_000})) == (
            "PAYLOAD_TOO_LARGE"
        )
        assert _err(await c.call_tool("memory_history", {"memory_id": "mem_nope"})) in (
            "NOT_FOUND",
            "INVALID_ARGUMENT",
        )
        assert _err(await c.call_tool("forget", {})) == "INVALID_ARGUMENT"
        assert _err(
            await c.call_tool("recall", {"query": "tea", "created_after": "yesterday"})
        ) == ("INVALID_ARGUMENT")
        assert _err(await c.call_tool("recall", {"query": "tea", "user_id": "bob"})) == (
            "PERMISSION_DENIED"
        )
        with pytest.raises(MCPError, match="configured user"):
            await c.read_resource("memvault://users/bob/profile")
        # Still serving.
        assert _ok(await c.call_tool("remember", {"content": "still here"}))["memory"]


async def test_a_user_key_fixes_the_user_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "mv.db"
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}")) as v:
        _, secret = v.create_api_key("carol")
        v.add("dave", "dave's secret plan")
    async with _stdio(db, MEMVAULT_MCP_API_KEY=secret) as c:
        made = _ok(await c.call_tool("remember", {"content": "Carol plays the cello"}))
        assert made["memory"]["user_id"] == "carol"
        assert _err(await c.call_tool("list_memories", {"user_id": "dave"})) == (
            "PERMISSION_DENIED"
        )
        own = _ok(await c.call_tool("list_memories", {"user_id": "me"}))
        assert [m["content"] for m in own["memories"]] == ["Carol plays the cello"]


# ----------------------------------------------------------------------------- HTTP
@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    db = tmp_path / "mv.db"
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{db}")) as v:
        secrets = {
            "alice": v.create_api_key("alice")[1],
            "bob": v.create_api_key("bob")[1],
            "admin": v.create_api_key(admin=True)[1],
        }
        v.add("bob", "Bob keeps his spare key under the blue pot")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memvault", "mcp", "--http", "--port", str(port)],
        env=_env(db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                why = proc.stderr.read().decode() if proc.stderr else "it did not start"
                raise RuntimeError(why) from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp", secrets
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.stderr is not None:
                proc.stderr.close()


@asynccontextmanager
async def _http(url: str, secret: str) -> AsyncIterator[Client]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=120) as h,
        Client(streamable_http_client(url, http_client=h)) as c,
    ):
        yield c


async def test_every_tool_over_http_with_keys(http_server: tuple[str, dict[str, str]]) -> None:
    url, keys = http_server
    async with _http(url, keys["alice"]) as c:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        m = _ok(await c.call_tool("remember", {"content": "Alice collects vinyl records"}))
        mid = m["memory"]["memory_id"]
        assert m["memory"]["user_id"] == "alice"
        assert _ok(await c.call_tool("recall", {"query": "music hobby"}))["hits"]
        assert _ok(await c.call_tool("get_context", {"message": "gift ideas?"}))["memory_ids"]
        assert _ok(await c.call_tool("update_memory", {"memory_id": mid, "importance": 0.9}))
        assert len(_ok(await c.call_tool("memory_history", {"memory_id": mid}))["history"]) == 2
        assert _ok(await c.call_tool("list_memories", {}))["memories"][0]["memory_id"] == mid
        # Alice's key cannot reach Bob: naming him is refused, his ids are not found.
        assert _err(await c.call_tool("recall", {"query": "key", "user_id": "bob"})) == (
            "PERMISSION_DENIED"
        )
        bobs = _ok(await c.call_tool("recall", {"query": "spare key under the pot"}))
        assert all(h["memory"]["user_id"] == "alice" for h in bobs["hits"])
        profile = json.loads(
            (await c.read_resource("memvault://users/me/profile")).contents[0].text  # type: ignore[union-attr]
        )
        assert profile["user"]["user_id"] == "alice"
        with pytest.raises(MCPError, match="only for its own user"):
            await c.read_resource("memvault://users/bob/summary")
    async with _http(url, keys["bob"]) as c:
        for tool, args in (
            ("memory_history", {"memory_id": mid}),
            ("update_memory", {"memory_id": mid, "content": "hijacked"}),
            ("forget", {"memory_id": mid}),
        ):
            assert _err(await c.call_tool(tool, args)) == "NOT_FOUND", tool
        assert _ok(await c.call_tool("forget", {"query": "spare key"}))["matches"]
    async with _http(url, keys["admin"]) as c:
        assert _err(await c.call_tool("list_memories", {})) == "INVALID_ARGUMENT"  # name one
        got = _ok(await c.call_tool("list_memories", {"user_id": "alice"}))
        assert [x["content"] for x in got["memories"]] == ["Alice collects vinyl records"]
        assert got["memories"][0]["importance"] == 0.9  # Bob changed nothing


def test_http_needs_a_valid_key(http_server: tuple[str, dict[str, str]]) -> None:
    url, _ = http_server
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer mvk_wrong"}, {"Authorization": "Basic x"}):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "UNAUTHENTICATED"
