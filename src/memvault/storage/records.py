"""The per-user records beside memories: users, messages, sessions, summary, metrics, and
the global context. A mixin of the SQLite backend (plain SQL that PostgreSQL also speaks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from memvault.errors import NotFoundError
from memvault.models import ContextEntry, Job, Message, Metrics, Session, Summary, User
from memvault.storage.access import AccessTracker
from memvault.storage.jobs import insert_jobs
from memvault.storage.keys import write_audit
from memvault.storage.runner import Runner
from memvault.storage.sql import codec
from memvault.storage.sql.dbapi import Conn, Connections
from memvault.storage.sql.queries import Statements

_USER_COLS = "user_id, username, profile, timezone, created_at, updated_at"
_SESSION_COLS = "session_id, user_id, agent_id, metadata, status, created_at, updated_at, ended_at"
_METRIC_COLS = (
    "user_id, total_messages, messages_by_role, counters, first_interaction_at, "
    "last_interaction_at, current_streak, longest_streak, last_active_date"
)


def _user(row: tuple[Any, ...]) -> User:
    return User.model_construct(
        user_id=row[0],
        username=row[1],
        profile=codec.loads_obj(row[2]),
        timezone=row[3],
        created_at=datetime.fromisoformat(row[4]),
        updated_at=datetime.fromisoformat(row[5]),
    )


def _message(row: tuple[Any, ...]) -> Message:
    return Message.model_construct(
        message_id=row[0],
        user_id=row[1],
        session_id=row[2],
        role=row[3],
        content=row[4],
        metadata=codec.loads_obj(row[5]),
        created_at=datetime.fromisoformat(row[6]),
    )


def _session(row: tuple[Any, ...]) -> Session:
    return Session.model_construct(
        session_id=row[0],
        user_id=row[1],
        agent_id=row[2],
        metadata=codec.loads_obj(row[3]),
        status=row[4],
        created_at=datetime.fromisoformat(row[5]),
        updated_at=datetime.fromisoformat(row[6]),
        ended_at=codec.parse_ts(row[7]),
    )


INSERT_METRICS = f"INSERT INTO user_metrics ({_METRIC_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def metrics_row(m: Metrics) -> tuple[Any, ...]:
    """The values of `_METRIC_COLS` for `m`."""
    return (
        m.user_id,
        m.total_messages,
        codec.dumps(m.messages_by_role),
        codec.dumps(m.counters),
        codec.ts(m.first_interaction_at),
        codec.ts(m.last_interaction_at),
        m.current_streak,
        m.longest_streak,
        None if m.last_active_date is None else m.last_active_date.isoformat(),
    )


def _metrics(row: tuple[Any, ...]) -> Metrics:
    return Metrics.model_construct(
        user_id=row[0],
        total_messages=row[1],
        messages_by_role=codec.loads_obj(row[2]),
        counters=codec.loads_obj(row[3]),
        first_interaction_at=codec.parse_ts(row[4]),
        last_interaction_at=codec.parse_ts(row[5]),
        current_streak=row[6],
        longest_streak=row[7],
        last_active_date=codec.parse_date(row[8]),
    )


class RecordStore:
    """Connections, the runner, access-count flushing, and every record but memories."""

    db: Connections
    runner: Runner
    access: AccessTracker
    sql: Statements

    def _hook_user_gone(self, conn: Conn, user_id: str) -> None:
        """Called in the transaction that erases `user_id`, before its row is deleted."""

    def _flush_access(self, conn: Conn) -> None:
        taken = self.access.take()
        if not taken:
            return
        try:
            conn.executemany(
                self.sql.bump_access,
                [{"b_pk": pk, "n": p.count, "at": p.last_at} for pk, p in taken.items()],
            )
        except BaseException:
            self.access.give_back(taken)
            raise

    async def _write(self, fn: Callable[[Any], Any]) -> Any:
        """Run `fn` in one write transaction (and flush access counts when due)."""

        def run(conn: Conn) -> Any:
            result = fn(conn)
            if self.access.due():
                self._flush_access(conn)
            return result

        return await self.runner.write(self.db.write, run)

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        return await self.runner.read(self.db.read, fn)

    async def _point_read(self, fn: Callable[[Any], Any]) -> Any:
        """A read of a few rows by key (see `ThreadRunner.point_read`)."""
        return await self.runner.point_read(self.db.read, fn)

    # ------------------------------------------------------------------ users
    def _ensure_user(self, conn: Conn, user_id: str, username: str | None, at: str | None) -> None:
        conn.execute(
            "INSERT INTO users (user_id, username, profile, timezone, created_at, updated_at) "
            "VALUES (?, ?, '{}', NULL, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            (user_id, username, at, at),
        )

    async def ensure_user(self, user_id: str, username: str | None, now: datetime) -> User:
        def run(conn: Conn) -> User:
            self._ensure_user(conn, user_id, username, codec.ts(now))
            row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,))
            return _user(row.fetchone())

        result: User = await self._write(run)
        return result

    async def get_user(self, user_id: str) -> User | None:
        def run(conn: Conn) -> User | None:
            row = conn.execute(
                f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            return None if row is None else _user(row)

        result: User | None = await self._read(run)
        return result

    async def update_user(self, user_id: str, change: Callable[[User], User]) -> User:
        def run(conn: Conn) -> User:
            row = conn.execute(
                f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no user {user_id!r}", {"user_id": user_id})
            new = change(_user(row))
            conn.execute(
                "UPDATE users SET username = ?, profile = ?, timezone = ?, updated_at = ? "
                "WHERE user_id = ?",
                (
                    new.username,
                    codec.dumps(new.profile),
                    new.timezone,
                    codec.ts(new.updated_at),
                    user_id,
                ),
            )
            return new

        result: User = await self._write(run)
        return result

    async def list_users(self, limit: int, after: str | None) -> list[User]:
        def run(conn: Conn) -> list[User]:
            rows = conn.execute(
                f"SELECT {_USER_COLS} FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
                (after or "", limit),
            ).fetchall()
            return [_user(r) for r in rows]

        result: list[User] = await self._read(run)
        return result

    async def erase_user(self, user_id: str, now: datetime, actor: str | None) -> dict[str, int]:
        def run(conn: Conn) -> dict[str, int]:
            counts = {
                table: int(
                    conn.execute(
                        f"SELECT count(*) FROM {table} WHERE user_id = ?",
                        (user_id,),
                    ).fetchone()[0]
                )
                for table in (
                    "memories",
                    "memory_history",
                    "messages",
                    "sessions",
                    "summaries",
                    "jobs",
                )
            }
            conn.execute("DELETE FROM memory_history WHERE user_id = ?", (user_id,))
            self._hook_user_gone(conn, user_id)
            gone = conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount
            if not gone:
                raise NotFoundError(f"no user {user_id!r}", {"user_id": user_id})
            counts["api_keys"] = conn.execute(
                "DELETE FROM api_keys WHERE user_id = ?", (user_id,)
            ).rowcount
            write_audit(conn, now, actor, "user.erase", user_id, dict(counts))
            return counts

        result: dict[str, int] = await self._write(run)
        return result

    # ------------------------------------------------------------------ messages
    async def add_message(
        self,
        message: Message,
        cap: int,
        metrics: Callable[[Metrics], Metrics],
        jobs: Sequence[Job] = (),
    ) -> Message:
        """Append a message (trimming the history to `cap`), count it, and add `jobs`
        (its extraction), all in one transaction."""

        def run(conn: Conn) -> Message:
            at = codec.ts(message.created_at)
            self._ensure_user(conn, message.user_id, None, at)
            conn.execute(
                "INSERT INTO messages (message_id, user_id, session_id, role, content, metadata, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message.message_id,
                    message.user_id,
                    message.session_id,
                    message.role,
                    message.content,
                    codec.dumps(message.metadata),
                    at,
                ),
            )
            # Keep the newest `cap` messages of this user (seed 002's MAX_MESSAGES).
            conn.execute(
                "DELETE FROM messages WHERE user_id = ? AND pk <= (SELECT pk FROM messages "
                "WHERE user_id = ? ORDER BY pk DESC LIMIT 1 OFFSET ?)",
                (message.user_id, message.user_id, cap),
            )
            self._update_metrics(conn, message.user_id, metrics)
            if jobs:
                insert_jobs(conn, jobs)
            return message

        result: Message = await self._write(run)
        return result

    async def messages(self, user_id: str, limit: int, session_id: str | None) -> list[Message]:
        def run(conn: Conn) -> list[Message]:
            cols = "message_id, user_id, session_id, role, content, metadata, created_at"
            if session_id is None:
                rows = conn.execute(
                    f"SELECT {cols} FROM (SELECT pk, {cols} FROM messages WHERE user_id = ? "
                    "ORDER BY pk DESC LIMIT ?) AS recent ORDER BY pk",
                    (user_id, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {cols} FROM (SELECT pk, {cols} FROM messages WHERE user_id = ? "
                    "AND session_id = ? ORDER BY pk DESC LIMIT ?) AS recent ORDER BY pk",
                    (user_id, session_id, limit),
                ).fetchall()
            return [_message(r) for r in rows]

        result: list[Message] = await self._read(run)
        return result

    async def clear_messages(self, user_id: str) -> int:
        def run(conn: Conn) -> int:
            return int(conn.execute("DELETE FROM messages WHERE user_id = ?", (user_id,)).rowcount)

        result: int = await self._write(run)
        return result

    # ------------------------------------------------------------------ sessions
    async def insert_session(self, session: Session) -> Session:
        def run(conn: Conn) -> Session:
            self._ensure_user(conn, session.user_id, None, codec.ts(session.created_at))
            self._put_session(conn, session, insert=True)
            return session

        result: Session = await self._write(run)
        return result

    def _put_session(self, conn: Conn, s: Session, *, insert: bool) -> None:
        values = (
            s.user_id,
            s.agent_id,
            codec.dumps(s.metadata),
            s.status,
            codec.ts(s.created_at),
            codec.ts(s.updated_at),
            codec.ts(s.ended_at),
            s.session_id,
        )
        if insert:
            conn.execute(
                "INSERT INTO sessions (user_id, agent_id, metadata, status, created_at, "
                "updated_at, ended_at, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            conn.execute(
                "UPDATE sessions SET user_id = ?, agent_id = ?, metadata = ?, status = ?, "
                "created_at = ?, updated_at = ?, ended_at = ? WHERE session_id = ?",
                values,
            )

    def _get_session(self, conn: Conn, user_id: str, session_id: str) -> Session | None:
        row = conn.execute(
            f"SELECT {_SESSION_COLS} FROM sessions WHERE user_id = ? AND session_id = ?",
            (user_id, session_id),
        ).fetchone()
        return None if row is None else _session(row)

    async def get_session(self, user_id: str, session_id: str) -> Session | None:
        result: Session | None = await self._read(
            lambda conn: self._get_session(conn, user_id, session_id)
        )
        return result

    async def update_session(
        self, user_id: str, session_id: str, change: Callable[[Session], Session]
    ) -> Session:
        def run(conn: Conn) -> Session:
            current = self._get_session(conn, user_id, session_id)
            if current is None:
                raise NotFoundError(
                    f"no session {session_id!r} for user {user_id!r}", {"session_id": session_id}
                )
            new = change(current)
            self._put_session(conn, new, insert=False)
            return new

        result: Session = await self._write(run)
        return result

    async def list_sessions(self, user_id: str, limit: int, status: str | None) -> list[Session]:
        def run(conn: Conn) -> list[Session]:
            sql = f"SELECT {_SESSION_COLS} FROM sessions WHERE user_id = ?"
            args: list[Any] = [user_id]
            if status is not None:
                sql += " AND status = ?"
                args.append(status)
            rows = conn.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit))
            return [_session(r) for r in rows.fetchall()]

        result: list[Session] = await self._read(run)
        return result

    # ------------------------------------------------------------------ summary
    async def put_summary(self, user_id: str, content: str, now: datetime) -> Summary:
        def run(conn: Conn) -> Summary:
            at = codec.ts(now)
            self._ensure_user(conn, user_id, None, at)
            conn.execute(
                "INSERT INTO summaries (user_id, content, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                "content = excluded.content, updated_at = excluded.updated_at",
                (user_id, content, at, at),
            )
            row = conn.execute(
                "SELECT content, created_at, updated_at FROM summaries WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            return Summary.model_construct(
                user_id=user_id,
                content=row[0],
                created_at=datetime.fromisoformat(row[1]),
                updated_at=datetime.fromisoformat(row[2]),
            )

        result: Summary = await self._write(run)
        return result

    async def get_summary(self, user_id: str) -> Summary | None:
        def run(conn: Conn) -> Summary | None:
            row = conn.execute(
                "SELECT content, created_at, updated_at FROM summaries WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            if row is None:
                return None
            return Summary.model_construct(
                user_id=user_id,
                content=row[0],
                created_at=datetime.fromisoformat(row[1]),
                updated_at=datetime.fromisoformat(row[2]),
            )

        result: Summary | None = await self._read(run)
        return result

    # ------------------------------------------------------------------ metrics
    def _get_metrics(self, conn: Conn, user_id: str) -> Metrics | None:
        row = conn.execute(
            f"SELECT {_METRIC_COLS} FROM user_metrics WHERE user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else _metrics(row)

    def _update_metrics(
        self, conn: Conn, user_id: str, change: Callable[[Metrics], Metrics]
    ) -> Metrics:
        new = change(self._get_metrics(conn, user_id) or Metrics(user_id=user_id))
        conn.execute(
            f"{INSERT_METRICS} ON CONFLICT (user_id) DO UPDATE SET "
            "total_messages = excluded.total_messages, "
            "messages_by_role = excluded.messages_by_role, counters = excluded.counters, "
            "first_interaction_at = excluded.first_interaction_at, "
            "last_interaction_at = excluded.last_interaction_at, "
            "current_streak = excluded.current_streak, longest_streak = excluded.longest_streak, "
            "last_active_date = excluded.last_active_date",
            metrics_row(new),
        )
        return new

    async def update_metrics(self, user_id: str, change: Callable[[Metrics], Metrics]) -> Metrics:
        result: Metrics = await self._write(
            lambda conn: self._update_metrics(conn, user_id, change)
        )
        return result

    async def get_metrics(self, user_id: str) -> Metrics | None:
        result: Metrics | None = await self._read(lambda conn: self._get_metrics(conn, user_id))
        return result

    # ------------------------------------------------------------------ global context
    async def put_context(
        self, key: str, value: Any, now: datetime, by: str | None
    ) -> ContextEntry:
        def run(conn: Conn) -> ContextEntry:
            conn.execute(
                "INSERT INTO global_context (key, value, updated_at, updated_by) VALUES "
                "(?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (key, codec.dumps(value), codec.ts(now), by),
            )
            return ContextEntry.model_construct(key=key, value=value, updated_at=now, updated_by=by)

        result: ContextEntry = await self._write(run)
        return result

    async def get_context(self, key: str) -> ContextEntry | None:
        def run(conn: Conn) -> ContextEntry | None:
            row = conn.execute(
                "SELECT key, value, updated_at, updated_by FROM global_context WHERE key = ?",
                (key,),
            ).fetchone()
            return None if row is None else _context(row)

        result: ContextEntry | None = await self._read(run)
        return result

    async def list_context(self) -> list[ContextEntry]:
        def run(conn: Conn) -> list[ContextEntry]:
            rows = conn.execute(
                "SELECT key, value, updated_at, updated_by FROM global_context ORDER BY key"
            ).fetchall()
            return [_context(r) for r in rows]

        result: list[ContextEntry] = await self._read(run)
        return result

    async def delete_context(self, key: str) -> bool:
        def run(conn: Conn) -> bool:
            return bool(conn.execute("DELETE FROM global_context WHERE key = ?", (key,)).rowcount)

        result: bool = await self._write(run)
        return result


def _context(row: tuple[Any, ...]) -> ContextEntry:
    return ContextEntry.model_construct(
        key=row[0],
        value=json.loads(row[1]),
        updated_at=datetime.fromisoformat(row[2]),
        updated_by=row[3],
    )
