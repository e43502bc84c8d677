"""The job table: background work with a lease, kept in the store so a restart loses
nothing. A mixin of the SQL backends (plain SQL both engines speak).

A worker leases due jobs (`claim_jobs`): each gets a fresh `lease_token` and a
`lease_until`. It ends a job with the token it holds: `done` (in the same transaction as
the memories the job wrote: `JobDone` given to `insert_memories`) or failed (back to
`pending` with a later `run_after`, or `failed` after the last attempt). A token that no
longer matches (the lease ran out and another worker took the job, or the user was erased)
ends nothing: that transaction rolls back, so a job's writes land exactly once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from memvault.errors import ConflictError
from memvault.models import Job, construct
from memvault.storage.base import JobDone
from memvault.storage.sql import codec
from memvault.storage.sql.dbapi import Conn

JOB_COLUMNS = (
    "job_id, user_id, kind, payload, status, attempts, run_after, lease_token, lease_until, "
    "last_error, result, created_at, updated_at"
)
MAX_ERROR_CHARS = 2000


def job_from_row(row: Sequence[Any]) -> Job:
    return construct(
        Job,
        {
            "job_id": row[0],
            "user_id": row[1],
            "kind": row[2],
            "payload": codec.loads_obj(row[3]),
            "status": row[4],
            "attempts": row[5],
            "run_after": datetime.fromisoformat(row[6]),
            "lease_token": row[7],
            "lease_until": codec.parse_ts(row[8]),
            "last_error": row[9],
            "result": None if row[10] is None else codec.loads_obj(row[10]),
            "created_at": datetime.fromisoformat(row[11]),
            "updated_at": datetime.fromisoformat(row[12]),
        },
    )


def insert_jobs(conn: Conn, jobs: Sequence[Job]) -> None:
    """Add job rows inside the caller's transaction."""
    conn.executemany(
        f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                j.job_id,
                j.user_id,
                j.kind,
                codec.dumps(j.payload),
                j.status,
                j.attempts,
                codec.ts(j.run_after),
                None,
                None,
                None,
                None,
                codec.ts(j.created_at),
                codec.ts(j.updated_at),
            )
            for j in jobs
        ],
    )


def finish_job(conn: Conn, done: JobDone, now: datetime) -> None:
    """Mark a leased job done inside the caller's transaction; raises `ConflictError` (so
    the transaction rolls back) when the lease is no longer this worker's."""
    at = codec.ts(done.at or now)
    changed = conn.execute(
        "UPDATE jobs SET status = 'done', result = ?, last_error = NULL, lease_token = NULL, "
        "lease_until = NULL, updated_at = ? "
        "WHERE job_id = ? AND lease_token = ? AND status = 'running'",
        (codec.dumps(done.result), at, done.job_id, done.token),
    ).rowcount
    if not changed:
        raise ConflictError(
            f"job {done.job_id!r} is no longer leased by this worker", {"job_id": done.job_id}
        )


class JobStore:
    """Enqueue, lease, finish, list and retry jobs."""

    _write: Callable[..., Any]
    _read: Callable[..., Any]
    _ensure_user: Callable[..., None]  # RecordStore's

    async def enqueue_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        def run(conn: Conn) -> list[Job]:
            for user_id in {j.user_id for j in jobs}:
                self._ensure_user(conn, user_id, None, codec.ts(jobs[0].created_at))
            insert_jobs(conn, jobs)
            return list(jobs)

        result: list[Job] = await self._write(run)
        return result

    async def claim_jobs(
        self,
        now: datetime,
        lease_s: float,
        limit: int,
        max_attempts: int,
        kinds: Sequence[str] | None = None,
        user_id: str | None = None,
    ) -> list[Job]:
        """Lease up to `limit` due jobs (of `kinds`, of `user_id` when given): pending ones
        whose time has come and running ones whose lease ran out (their worker died). A job
        whose lease ran out after its last attempt becomes `failed` instead. Looks first
        with a read, so an idle worker's polling writes nothing."""
        at = codec.ts(now)
        until = codec.ts(now + timedelta(seconds=lease_s))
        kind_sql = ""
        kind_params: tuple[str, ...] = ()
        if kinds:
            kind_sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            kind_params += tuple(kinds)
        if user_id is not None:
            kind_sql += " AND user_id = ?"
            kind_params += (user_id,)
        due_sql = (
            "SELECT job_id FROM jobs WHERE ((status = 'pending' AND run_after <= ?) OR "
            f"(status = 'running' AND lease_until <= ?)){kind_sql} "
            "ORDER BY run_after, job_id LIMIT ?"
        )

        def peek(conn: Conn) -> bool:
            return conn.execute(due_sql, (at, at, *kind_params, 1)).fetchone() is not None

        if not await self._read(peek):
            return []

        def run(conn: Conn) -> list[Job]:
            conn.execute(
                "UPDATE jobs SET status = 'failed', lease_token = NULL, lease_until = NULL, "
                "last_error = 'the worker stopped during the last attempt (lease ran out)', "
                "updated_at = ? WHERE status = 'running' AND lease_until <= ? AND attempts >= ?",
                (at, at, max_attempts),
            )
            rows = conn.execute(due_sql, (at, at, *kind_params, limit)).fetchall()
            claimed: list[Job] = []
            for (job_id,) in rows:
                token = secrets.token_urlsafe(16)
                conn.execute(
                    "UPDATE jobs SET status = 'running', lease_token = ?, lease_until = ?, "
                    "attempts = attempts + 1, updated_at = ? WHERE job_id = ?",
                    (token, until, at, job_id),
                )
                row = conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchone()
                claimed.append(job_from_row(row))
            return claimed

        result: list[Job] = await self._write(run)
        return result

    async def complete_job(self, done: JobDone, now: datetime) -> bool:
        """Mark a leased job done (a job that wrote nothing); False when the lease is lost."""

        def run(conn: Conn) -> bool:
            try:
                finish_job(conn, done, now)
            except ConflictError:
                return False
            return True

        result: bool = await self._write(run)
        return result

    async def fail_job(
        self, job_id: str, token: str, error: str, now: datetime, retry_at: datetime | None
    ) -> bool:
        """Give a leased job back: pending again from `retry_at`, or failed when None."""

        def run(conn: Conn) -> bool:
            status = "pending" if retry_at is not None else "failed"
            changed = conn.execute(
                "UPDATE jobs SET status = ?, run_after = COALESCE(?, run_after), "
                "last_error = ?, lease_token = NULL, lease_until = NULL, updated_at = ? "
                "WHERE job_id = ? AND lease_token = ? AND status = 'running'",
                (
                    status,
                    codec.ts(retry_at),
                    error[:MAX_ERROR_CHARS],
                    codec.ts(now),
                    job_id,
                    token,
                ),
            ).rowcount
            return bool(changed)

        result: bool = await self._write(run)
        return result

    async def get_job(self, job_id: str) -> Job | None:
        def run(conn: Conn) -> Job | None:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else job_from_row(row)

        result: Job | None = await self._read(run)
        return result

    async def list_jobs(
        self, user_id: str | None, status: str | None, limit: int, before: str | None = None
    ) -> list[Job]:
        """Newest first (job ids sort by creation)."""
        conds, params = [], []
        for name, value in (("user_id", user_id), ("status", status)):
            if value is not None:
                conds.append(f"{name} = ?")
                params.append(value)
        if before is not None:
            conds.append("job_id < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(conds)} " if conds else ""

        def run(conn: Conn) -> list[Job]:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs {where}ORDER BY job_id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
            return [job_from_row(r) for r in rows]

        result: list[Job] = await self._read(run)
        return result

    async def retry_jobs(
        self, job_ids: Sequence[str] | None, user_id: str | None, now: datetime
    ) -> int:
        """Failed jobs (those named, or all of them, or all of one user's) pending again."""
        at = codec.ts(now)

        def run(conn: Conn) -> int:
            sql = (
                "UPDATE jobs SET status = 'pending', attempts = 0, run_after = ?, updated_at = ? "
                "WHERE status = 'failed'"
            )
            params: list[Any] = [at, at]
            if user_id is not None:
                sql += " AND user_id = ?"
                params.append(user_id)
            if job_ids is None:
                return int(conn.execute(sql, params).rowcount)
            done = 0
            for job_id in job_ids:
                done += conn.execute(sql + " AND job_id = ?", (*params, job_id)).rowcount
            return done

        result: int = await self._write(run)
        return result

    async def job_counts(self, user_id: str | None = None) -> dict[str, int]:
        def run(conn: Conn) -> dict[str, int]:
            if user_id is None:
                rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
            else:
                rows = conn.execute(
                    "SELECT status, count(*) FROM jobs WHERE user_id = ? GROUP BY status",
                    (user_id,),
                )
            return {s: int(n) for s, n in rows.fetchall()}

        result: dict[str, int] = await self._read(run)
        return result
