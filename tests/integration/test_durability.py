"""Several processes on one store (a SQLite file, or a PostgreSQL database), and kill -9 in
the middle of a write loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from memvault import MemVault, Settings

WRITER = [sys.executable, str(Path(__file__).with_name("writer_proc.py"))]
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_processes_writing_one_file_lose_nothing(settings: Settings) -> None:
    url = settings.database_url
    MemVault(settings).close()  # migrate once, so the children race on writes only
    # The JSON-file store rewrites a user's files on each write: 150 writes a process still
    # interleave hundreds of times there, in a quarter of the time 300 took (71 s).
    n = 150 if url.startswith("jsonfs") else 300
    procs = [
        subprocess.Popen(
            [*WRITER, url, user, str(n), str(batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for user, batch in (("p1", 1), ("p2", 1), ("p3", 25))
    ]
    acked: dict[str, list[str]] = {}
    for proc, user in zip(procs, ("p1", "p2", "p3"), strict=True):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "locked" not in err
        acked[user] = out.split()
    with MemVault(settings) as vault:
        for user, ids in acked.items():
            assert len(ids) == n
            assert vault.count(user) == n
            assert len(vault.get_many(user, ids[:1000])) == n
        assert len(vault.get_message_history("p1", limit=1000)) == 100  # capped


def test_acknowledged_writes_survive_kill_9(settings: Settings) -> None:
    url = settings.database_url
    MemVault(settings).close()
    acked: list[str] = []
    with subprocess.Popen(
        [*WRITER, url, "crash", "0", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stdout is not None
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "writer ended early"
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    with MemVault(settings) as vault:
        found = set()
        for start in range(0, len(acked), 1000):
            found |= {m.memory_id for m in vault.get_many("crash", acked[start : start + 1000])}
        assert found == set(acked)
        assert vault.count("crash") >= len(acked)
