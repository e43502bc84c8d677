"""API keys and the audit log: a mixin of the SQLite backend (plain SQL that PostgreSQL
also speaks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from memvault.models import ApiKey, AuditEntry
from memvault.storage.sql import codec
from memvault.storage.sql.dbapi import Conn

_KEY_COLS = "key_id, prefix, user_id, name, rate_per_minute, created_at, revoked_at"
_AUDIT_COLS = "audit_id, at, actor, action, user_id, details"


def _key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey.model_construct(
        key_id=row[0],
        prefix=row[1],
        user_id=row[2],
        name=row[3],
        rate_per_minute=row[4],
        created_at=datetime.fromisoformat(row[5]),
        revoked_at=codec.parse_ts(row[6]),
    )


def _audit(row: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry.model_construct(
        audit_id=row[0],
        at=datetime.fromisoformat(row[1]),
        actor=row[2],
        action=row[3],
        user_id=row[4],
        details=codec.loads_obj(row[5]),
    )


def write_audit(
    conn: Conn,
    at: datetime,
    actor: str | None,
    action: str,
    user_id: str | None,
    details: dict[str, Any],
) -> None:
    """Add an audit row inside the caller's transaction."""
    conn.execute(
        f"INSERT INTO audit_log ({_AUDIT_COLS.split(', ', 1)[1]}) VALUES (?, ?, ?, ?, ?)",
        (codec.ts(at), actor, action, user_id, codec.dumps(details)),
    )


class KeyStore:
    """API keys by hash, and the audit log."""

    _write: Callable[..., Any]
    _read: Callable[..., Any]
    _point_read: Callable[..., Any]

    async def insert_key(self, key: ApiKey, key_hash: str, actor: str | None) -> ApiKey:
        def run(conn: Conn) -> ApiKey:
            conn.execute(
                f"INSERT INTO api_keys (key_hash, {_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_hash,
                    key.key_id,
                    key.prefix,
                    key.user_id,
                    key.name,
                    key.rate_per_minute,
                    codec.ts(key.created_at),
                    None,
                ),
            )
            write_audit(
                conn,
                key.created_at,
                actor,
                "key.create",
                key.user_id,
                {"key_id": key.key_id, "admin": key.user_id is None},
            )
            return key

        result: ApiKey = await self._write(run)
        return result

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        def run(conn: Conn) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            return None if row is None else _key(row)

        result: ApiKey | None = await self._point_read(run)
        return result

    async def list_keys(self, user_id: str | None, *, include_revoked: bool) -> list[ApiKey]:
        def run(conn: Conn) -> list[ApiKey]:
            where: list[str] = ["1 = 1"]
            args: list[Any] = []
            if user_id is not None:
                where.append("user_id = ?")
                args.append(user_id)
            if not include_revoked:
                where.append("revoked_at IS NULL")
            rows = conn.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE {' AND '.join(where)} "
                "ORDER BY created_at, key_id",
                args,
            ).fetchall()
            return [_key(r) for r in rows]

        result: list[ApiKey] = await self._read(run)
        return result

    async def revoke_key(self, key_id: str, now: datetime, actor: str | None) -> ApiKey | None:
        def run(conn: Conn) -> ApiKey | None:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (codec.ts(now), key_id),
            )
            row = conn.execute(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                return None
            key = _key(row)
            write_audit(conn, now, actor, "key.revoke", key.user_id, {"key_id": key_id})
            return key

        result: ApiKey | None = await self._write(run)
        return result

    async def add_audit(
        self,
        at: datetime,
        actor: str | None,
        action: str,
        user_id: str | None,
        details: dict[str, Any],
    ) -> None:
        await self._write(lambda conn: write_audit(conn, at, actor, action, user_id, details))

    async def audit_log(
        self, user_id: str | None, after: int | None, limit: int
    ) -> list[AuditEntry]:
        def run(conn: Conn) -> list[AuditEntry]:
            where: list[str] = ["audit_id > ?"]
            args: list[Any] = [after or 0]
            if user_id is not None:
                where.append("user_id = ?")
                args.append(user_id)
            rows = conn.execute(
                f"SELECT {_AUDIT_COLS} FROM audit_log WHERE {' AND '.join(where)} "
                "ORDER BY audit_id LIMIT ?",
                [*args, limit],
            ).fetchall()
            return [_audit(r) for r in rows]

        result: list[AuditEntry] = await self._read(run)
        return result
