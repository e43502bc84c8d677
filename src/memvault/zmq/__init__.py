"""The ZeroMQ door: the Memory Orchestrator (seed 004) and its client library."""

from memvault.zmq.client import AsyncMemoryClient, MemoryClient

__all__ = ["AsyncMemoryClient", "MemoryClient"]
