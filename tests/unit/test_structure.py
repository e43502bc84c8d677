"""The shape of the code: blocking and async twins agree; imports point down the layers."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from memvault import AsyncMemVault, MemVault

SRC = Path(__file__).parents[2] / "src" / "memvault"


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name != "open"
    }


def test_blocking_and_async_clients_have_the_same_methods_and_signatures() -> None:
    sync, aio = _public(MemVault), _public(AsyncMemVault)
    assert set(sync) == set(aio)
    for name, sig in aio.items():
        assert list(sig.parameters) == list(sync[name].parameters), name
        for p in sig.parameters:
            assert sig.parameters[p].kind == sync[name].parameters[p].kind, (name, p)
            assert sig.parameters[p].default == sync[name].parameters[p].default, (name, p)


FORBIDDEN = {
    "storage": (
        "memvault.service",
        "memvault.client",
        "memvault.cli",
        "memvault.memory_management",
    ),
    "service": ("memvault.client", "memvault.cli", "memvault.memory_management"),
    "cli": ("memvault.storage",),
    "extract": (
        "memvault.storage",
        "memvault.service",
        "memvault.client",
        "memvault.cli",
        "memvault.api",
        "memvault.zmq",
    ),
    "api": ("memvault.storage", "memvault.cli.", "memvault.memory_management", "memvault.zmq"),
    "zmq": ("memvault.storage", "memvault.cli.", "memvault.memory_management", "memvault.api"),
    "client.py": (
        "memvault.storage.registry",
        "memvault.storage.runner",
        "memvault.storage.sqlite",
    ),
    "memory_management.py": ("memvault.storage",),
    "memory_client.py": ("memvault.storage",),
    "memory_orchestrator.py": ("memvault.storage",),
    "models.py": ("memvault.storage", "memvault.service"),
}


def test_imports_point_down_the_layers() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        rules = FORBIDDEN.get(rel.parts[0], ())
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(rules), f"{rel} imports {name}"
