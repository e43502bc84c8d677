"""The worker as its own process (`memvault worker`): killed in the middle of a job, the job
is done exactly once after a restart; jobs survive a restart of the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from memvault import MemVault, Settings
from tests.integration.chat_server import Reply, chat_server, facts_reply


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "memvault", "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(cond: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_worker_killed_mid_job_leaves_it_to_the_next_one_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    with chat_server() as server:
        env = {
            **os.environ,
            "MEMVAULT_DATABASE_URL": settings.database_url,
            "MEMVAULT_DATA_DIR": str(tmp_path),
            "MEMVAULT_EXTRACTOR": "llm",
            "MEMVAULT_LLM_URL": server.url,
            "MEMVAULT_LLM_MODEL": "m",
            "MEMVAULT_LLM_TIMEOUT_S": "60",
            "MEMVAULT_JOB_LEASE_S": "2",
            "MEMVAULT_JOB_POLL_S": "0.1",
        }
        llm = {"extractor": "llm", "llm_url": server.url, "llm_model": "m", "job_worker": False}
        with MemVault(settings.model_copy(update=llm)) as v:
            msg = v.add_message("u", "user", "I live in Lisbon.")
            (job,) = v.list_jobs()
            assert job.payload["extractor"] == "llm"
        # The first worker hangs in the model call; it is killed there.
        server.script(Reply('{"facts": []}', delay_s=30))
        first = _worker(env)
        try:
            _wait(lambda: len(server.requests) == 1)
            with MemVault(settings.model_copy(update={"job_worker": False})) as v:
                assert v.get_job(job.job_id).status == "running"
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        # A new worker takes the job once its lease has run out, and does it once.
        server.script(
            facts_reply(
                {"text": "Lives in Lisbon", "category": "location", "slot": "location.home"}
            )
        )
        second = _worker(env)
        try:
            with MemVault(settings.model_copy(update={"job_worker": False})) as v:
                _wait(lambda: v.get_job(job.job_id).status == "done")
                time.sleep(0.5)  # a second run, if there were one, would land now
                done = v.get_job(job.job_id)
                facts = v.get_user_facts("u")
            assert done.attempts == 2
            assert [str(f.content) for f in facts] == ["Lives in Lisbon"]
            assert facts[0].metadata["sources"] == [msg.message_id]
            assert len(server.requests) == 2
        finally:
            second.send_signal(signal.SIGTERM)
            out, errs = second.communicate(timeout=30)
        assert second.returncode == 0, errs
        assert "jobs done 1" in out


def test_worker_once_runs_what_is_due_and_exits(settings: Settings, tmp_path: Path) -> None:
    with MemVault(settings.model_copy(update={"job_worker": False})) as v:
        v.add_message("u", "user", "I'm allergic to cats.", extract=True)
    env = {
        **os.environ,
        "MEMVAULT_DATABASE_URL": settings.database_url,
        "MEMVAULT_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "memvault", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "jobs done 1, retried 0, failed 0" in proc.stdout
    with MemVault(settings) as v:
        assert [str(f.content) for f in v.get_user_facts("u")] == ["Is allergic to cats"]


def test_the_library_worker_thread_runs_queued_jobs(settings: Settings) -> None:
    with MemVault(settings.model_copy(update={"job_poll_s": 0.05})) as v:
        v.add_message("u", "user", "My name is Dana.", extract=True)
        _wait(lambda: v.job_counts("u")["done"] == 1)
        assert [str(f.content) for f in v.get_user_facts("u")] == ["Name is Dana"]
