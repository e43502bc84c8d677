"""Seed 004's module name for the client library: `from memvault.memory_client import
MemoryClient` works as `from src.memory.memory_client import MemoryClient` did
(docs/migrate-from-seed-004.md)."""

from memvault.zmq.client import AsyncMemoryClient, MemoryClient

__all__ = ["AsyncMemoryClient", "MemoryClient"]
