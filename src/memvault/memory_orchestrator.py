"""Seed 004's module name for the service: `python -m memvault.memory_orchestrator` serves
the Memory Orchestrator on tcp://127.0.0.1:5570, as `memvault orchestrator` does
(docs/migrate-from-seed-004.md)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run `memvault orchestrator` with this process's arguments."""
    from memvault.cli.main import main as cli

    sys.argv = [sys.argv[0], "orchestrator", *sys.argv[1:]]
    cli()


if __name__ == "__main__":
    main()
