"""The JSON-file backend (`jsonfs:///path`, or seed 002's `DATA_DIR`): seed 002's layout,
safe files, and everything memvault does (docs/backends.md#json-files).

The files are the store. Each process keeps a private SQLite index of them (in a temporary
directory) so that search, listings and every rule work as on the other backends:

- at open, every file is read into the index (seed 002's own records are converted on
  the way, with stable ids);
- a write takes the store's lock (`flock` on `.memvault/lock`, across processes), brings
  the index up to date with what other processes wrote (`.memvault/generation`), runs,
  and writes the files of every user it touched, each one atomically (temp file, fsync,
  rename, directory fsync), then moves the generation on;
- a read first checks the generation (one small file) and reloads what changed.

A crash leaves every file whole: the previous version or the new one. The layout:

```
users_index.json            user id -> username, folder, generation
global_context.json         key -> value (seed 002's)
memvault_store.json         format, global-context metadata, the embedder of the vectors
api_keys.json, audit_log.jsonl
<user>/user_profile.json, conversation_history.json, user_facts.json,
       interaction_metrics.json, permanent_memories.json     (seed 002's files)
<user>/memories.json, memory_history.json, sessions.json, summary.json, vectors.json,
       jobs.json                                              (memvault's, beside them)
```

A user's folder is the user id when it is a plain lower-case name (`[a-z0-9][a-z0-9._-]*`,
at most 64 characters, not a reserved device name), and `_` + a hash of the id otherwise;
no id reaches a path outside the data directory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from memvault import seed_records as seed
from memvault.config import Settings
from memvault.crypto import Cipher, cipher_for, decrypt
from memvault.errors import ConfigurationError, ConflictError, UnavailableError
from memvault.models import HistoryEntry, Memory, Message, Metrics, Session, Summary, User
from memvault.storage.base import Capabilities, Restore
from memvault.storage.sql import codec
from memvault.storage.sql.connection import SqliteConnections
from memvault.storage.sql.dbapi import Conn
from memvault.storage.sqlite import SqliteBackend

FORMAT = "memvault-jsonfs"
ZSTD_MAGIC = b"MVZ1\n"
COMPRESS_FILE_FROM = 65_536  # bytes: memvault's own files larger than this are compressed
VERSION = 1
FACTS_NAMESPACE, PERMANENT_NAMESPACE = "facts", "permanent"
_PLAIN_DIR = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
_USER_TABLES = (
    "users",
    "memories",
    "memory_history",
    "messages",
    "sessions",
    "summaries",
    "user_metrics",
    # Vectors are kept in blocks (migration 0011): every change of a vector's slot changes
    # its block, whose user is the one whose files changed.
    "vector_blocks",
    "jobs",
)
_GLOBAL_TABLES = ("global_context", "api_keys", "audit_log", "vector_index")
_KEY_COLS = "key_id, key_hash, prefix, user_id, name, rate_per_minute, created_at, revoked_at"
_JOB_COLS = (
    "job_id, kind, payload, status, attempts, run_after, lease_token, lease_until, last_error, "
    "result, created_at, updated_at"
)


_COMPRESSED = frozenset({"memories.json", "memory_history.json", "vectors.json", "jobs.json"})


def jsonfs_path(url: str) -> Path:
    """`jsonfs:///abs/dir` or `jsonfs://relative/dir` -> the data directory."""
    if not url.startswith("jsonfs://"):
        raise ValueError(f"not a jsonfs URL: {url!r} (expected jsonfs:///path/to/dir)")
    rest = url[len("jsonfs://") :]
    if not rest.strip("/"):
        raise ValueError("a jsonfs URL names a directory: jsonfs:///path/to/dir")
    return Path(rest)


def user_dir_name(user_id: str) -> str:
    """The folder of a user (see the module docstring): never a path, never `..`."""
    base = user_id.split(".", 1)[0]
    if _PLAIN_DIR.match(user_id) and base not in _RESERVED and ".." not in user_id:
        return user_id
    return "_" + hashlib.sha256(user_id.encode()).hexdigest()[:40]


class Files:
    """Whole-file JSON reads and atomic writes under one directory, encrypted when a
    cipher is given (`memvault.crypto`)."""

    def __init__(self, root: Path, cipher: Cipher | None = None) -> None:
        self.cipher = cipher
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta = self.root / ".memvault"
        self.meta.mkdir(exist_ok=True)
        self._lock_fd = os.open(self.meta / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        self._written: dict[Path, str] = {}  # path -> digest of what this process wrote

    def inside(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts).resolve()
        if path != self.root and self.root not in path.parents:
            raise ConflictError(f"refusing a path outside the data directory: {parts!r}")
        return path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The store's write lock, across processes (within one, the writer connection's
        lock already lets one thread at a time in)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _where(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read_bytes(self, path: Path) -> bytes | None:
        """The (decrypted) bytes of `path`, or None when there is no such file."""
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnavailableError(f"cannot read {path}: {exc.strerror}") from exc
        data = decrypt(blob, self._where(path), self.cipher)
        if data.startswith(ZSTD_MAGIC):
            data = zstandard.ZstdDecompressor().decompress(data[len(ZSTD_MAGIC) :])
        return data

    def read(self, path: Path) -> Any:
        """The JSON in `path`, or None when there is no such file."""
        data = self.read_bytes(path)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise UnavailableError(
                f"{path} is not valid JSON ({exc}); nothing was changed"
            ) from exc

    def write(self, path: Path, value: Any, *, compress: bool = False) -> None:
        """Write `value` as JSON: a temp file beside it, fsync, rename, fsync the folder.
        Skipped when this process last wrote exactly this. `compress`: zstd when larger
        than `COMPRESS_FILE_FROM` (memvault's own files; seed 002's stay plain JSON)."""
        data = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False).encode()
        if compress and len(data) > COMPRESS_FILE_FROM:
            data = ZSTD_MAGIC + zstandard.ZstdCompressor(level=3).compress(data)
        self.write_bytes(path, data)

    def write_bytes(
        self, path: Path, data: bytes, *, plain: bool = False, cipher: Cipher | None = None
    ) -> None:
        """`cipher`: encrypt with this one instead of the store's (a key rotation, which
        also writes a file whatever this process wrote last)."""
        digest = hashlib.sha256(data).hexdigest()
        if cipher is None and self._written.get(path) == digest and path.exists():
            return
        use = cipher or self.cipher
        if use is not None and not plain:
            data = use.encrypt(data, self._where(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
        self._written[path] = digest

    def remove_dir(self, path: Path) -> None:
        if path.exists():
            gone = path.with_name(f".{path.name}.removed-{os.getpid()}")
            os.replace(path, gone)
            _fsync_dir(path.parent)
            shutil.rmtree(gone, ignore_errors=True)
        for p in list(self._written):
            if path in p.parents:
                del self._written[p]

    def clear_stale(self) -> int:
        """Remove temp files a crashed writer left (call under the lock: no write is under
        way); returns how many."""
        gone = 0
        for path in self.root.rglob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                gone += 1
        for path in self.root.glob(".*.removed-*"):
            shutil.rmtree(path, ignore_errors=True)
        return gone

    def generation(self) -> int:
        try:
            return int((self.meta / "generation").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


_INDEX_PREFIX = "memvault-jsonfs-"


def _clear_dead_indexes() -> None:
    """Remove the private indexes of processes that died without closing (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_INDEX_PREFIX}*-*"):
        pid_text = path.name[len(_INDEX_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # another user's live process


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonfsBackend(SqliteBackend):
    """Seed 002's JSON layout, with a private SQLite index per process."""

    capabilities = Capabilities(lexical=True, vector=True, listen_notify=False)
    seals_columns = False  # its files are encrypted whole

    def __init__(self, root: Path, settings: Settings, *, threaded: bool) -> None:
        self.files = Files(root, cipher_for(settings))
        _clear_dead_indexes()
        self._index_dir = Path(tempfile.mkdtemp(prefix=f"{_INDEX_PREFIX}{os.getpid()}-"))
        self._generation = -1
        # users_index.json as this process last read or wrote it: user id -> entry
        # (`dir`, `generation`: the version of the user's files the index holds).
        self._users: dict[str, dict[str, Any]] = {}
        super().__init__(self._index_dir / "index.db", settings, threaded=threaded)
        self.sqlite: SqliteConnections = self.db  # type: ignore[assignment]
        self._install_dirty_triggers()
        try:
            with self.files.locked():
                self.files.clear_stale()
            self.db.write(self._sync_now)
        except BaseException:
            self._drop_index()
            raise

    # ------------------------------------------------------------------ plumbing
    def _install_dirty_triggers(self) -> None:
        conn = self.sqlite.writer
        # No constraint on the table: a conflict clause of the statement that fires a
        # trigger (an upsert) would override one inside the trigger.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS mv_dirty (k TEXT NOT NULL)")
        for table in _USER_TABLES:
            for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
                key = f"'u:' || {row}.user_id"
                conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS mv_{table}_{event.lower()} AFTER {event} "
                    f"ON main.{table} BEGIN INSERT INTO mv_dirty (k) SELECT {key} "
                    f"WHERE NOT EXISTS (SELECT 1 FROM mv_dirty WHERE k = {key}); END"
                )
        for table in _GLOBAL_TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS mv_{table}_{event.lower()} AFTER {event} "
                    f"ON main.{table} BEGIN INSERT INTO mv_dirty (k) SELECT 'g' "
                    "WHERE NOT EXISTS (SELECT 1 FROM mv_dirty WHERE k = 'g'); END"
                )

    def _in_files(self, conn: Conn, fn: Callable[[Conn], Any]) -> Any:
        """Run `fn` in the writer's transaction under the store's lock: the index first
        catches up with the files, then the files of what `fn` changed are written."""
        with self.files.locked():
            self._sync(conn)
            conn.execute("DELETE FROM temp.mv_dirty")
            result = fn(conn)
            self._persist(conn)
            return result

    async def _write(self, fn: Callable[[Any], Any]) -> Any:
        return await super()._write(lambda conn: self._in_files(conn, fn))

    def _flush_access(self, conn: Conn) -> None:
        self._in_files(conn, super()._flush_access)

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        await self._catch_up()
        return await super()._read(fn)

    async def _point_read(self, fn: Callable[[Any], Any]) -> Any:
        await self._catch_up()
        return await super()._point_read(fn)

    async def _catch_up(self) -> None:
        if self.files.generation() != self._generation:
            await self.runner.write(self.db.write, self._sync_now)

    def _sync_now(self, conn: Conn) -> None:
        self._in_files(conn, lambda _: None)

    def _lock_path(self, name: str) -> str:
        """Maintenance locks (`exclusive`) live in the data directory, not beside the
        private index: every process sees them."""
        return str(self.files.meta / f"{name}.lock")

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._drop_index()

    def close_now(self) -> None:
        try:
            super().close_now()
        finally:
            self._drop_index()

    def _drop_index(self) -> None:
        self.files.close()
        shutil.rmtree(self._index_dir, ignore_errors=True)

    def rotate(self, new: Cipher) -> int:
        """Write every file again under `new` (under the lock; each file atomically, so an
        interrupted rotation leaves files under either key: keep the old one among
        `encryption_old_keys` until a rotation has finished). Returns the files written."""
        done = 0
        with self.files.locked():
            paths = [
                p
                for p in self.files.root.rglob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and self.files.meta not in p.parents
                and p.suffix in (".json", ".jsonl")
            ]
            for path in paths:
                data = self.files.read_bytes(path)
                if data is None:
                    continue
                self.files.write_bytes(path, data, cipher=new)
                done += 1
            self.files.cipher = new
        return done

    # ------------------------------------------------------------------ loading
    def _sync(self, conn: Conn) -> None:
        """Bring the index up to what the files hold (under the lock)."""
        generation = self.files.generation()
        if generation == self._generation:
            return
        listed = seed.index_entries(self.files.read(self.files.inside("users_index.json")))
        if self._generation == -1:  # first look: seed 002 folders the index does not list
            for user_id, folder in self._seed_folders():
                listed.setdefault(user_id, {"dir": folder, "generation": 0})
        for user_id, info in listed.items():
            held = self._users.get(user_id)
            if held is None or held.get("generation") != info.get("generation", 0):
                try:
                    self._load_user(conn, user_id, info)
                except (ValueError, KeyError, TypeError) as exc:  # pydantic's errors too
                    raise UnavailableError(
                        f"the files of user {user_id!r} hold a malformed record "
                        f"({type(exc).__name__}: {str(exc)[:200]}); nothing was changed"
                    ) from exc
        for user_id in self._users.keys() - listed.keys():
            self._delete_user_rows(conn, user_id)
            self.vectors.drop(user_id)
        self._users = listed
        self._load_globals(conn)
        self._generation = generation

    def _delete_user_rows(self, conn: Conn, user_id: str) -> None:
        conn.execute("DELETE FROM memory_history WHERE user_id = ?", (user_id,))
        self._hook_user_gone(conn, user_id)  # its vector blocks, before the cascade
        conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,))  # the rest cascades

    def _seed_folders(self) -> list[tuple[str, str]]:
        """(user id, folder) of the seed 002 user folders in the data directory."""
        out = []
        for p in seed.seed002_user_folders(self.files.root):
            profile = self.files.read(p / "user_profile.json")
            uid = profile.get("user_id") if isinstance(profile, dict) else None
            out.append((str(uid) if uid is not None else p.name, p.name))
        return out

    def _load_user(self, conn: Conn, user_id: str, info: dict[str, Any]) -> None:
        self._delete_user_rows(conn, user_id)
        self.vectors.drop(user_id)
        folder = self.files.inside(str(info.get("dir") or user_dir_name(user_id)))
        now = datetime.now(UTC)

        def read(name: str) -> Any:
            return self.files.read(folder / name)

        profile = read("user_profile.json")
        if not isinstance(profile, dict):
            profile = {"user_id": user_id, "username": info.get("username")}
        batch = Restore(users=[_user_from(user_id, profile, now)])
        memories: list[Memory] = []
        for i, item in enumerate(seed.record_list(read("user_facts.json"), "facts")):
            if isinstance(item, dict) and "memory_id" in item:
                memories.append(_memory_from(item))
            else:
                with contextlib.suppress(seed.SkipRow):
                    memories.append(seed.elysia_fact(user_id, i, item, None, now))
        for i, item in enumerate(seed.record_list(read("permanent_memories.json"), "memories")):
            if isinstance(item, dict) and "memory_id" in item:
                memories.append(_memory_from(item))
            else:
                with contextlib.suppress(seed.SkipRow):
                    memories.append(seed.elysia_permanent(user_id, i, item, now))
        memories += [_memory_from(m) for m in seed.record_list(read("memories.json"))]
        memories.sort(key=lambda m: (m.created_at, m.memory_id))
        batch.memories = memories
        for h in seed.record_list(read("memory_history.json")):
            entry = HistoryEntry.model_validate(
                {"history_id": 1, **h, "snapshot": h.get("snapshot") or {}}
            )
            batch.history.append((user_id, entry))
        for i, item in enumerate(
            seed.record_list(read("conversation_history.json"), "messages", "history")
        ):
            if isinstance(item, dict) and "message_id" in item:
                batch.messages.append(
                    Message.model_validate({**_message_fields(item), "user_id": user_id})
                )
            else:
                with contextlib.suppress(seed.SkipRow):
                    batch.messages.append(seed.elysia_message(user_id, i, item, now))
        batch.sessions = [
            Session.model_validate(s) for s in seed.record_list(read("sessions.json"))
        ]
        summary = read("summary.json")
        if isinstance(summary, dict):
            batch.summaries.append(Summary.model_validate(summary))
        metrics = read("interaction_metrics.json")
        if isinstance(metrics, dict):
            if "counters" in metrics and isinstance(metrics["counters"], dict):
                batch.metrics.append(Metrics.model_validate({**metrics, "user_id": user_id}))
            else:
                with contextlib.suppress(seed.SkipRow):
                    batch.metrics.append(seed.elysia_metrics(user_id, metrics))
        self._restore_in(conn, batch, now)
        vectors = read("vectors.json")
        if isinstance(vectors, dict):
            pks = dict(
                conn.execute(
                    "SELECT memory_id, pk FROM memories WHERE user_id = ?", (user_id,)
                ).fetchall()
            )
            self._hook_store_vectors(
                conn,
                [
                    (pks[memory_id], user_id, base64.b64decode(blob))
                    for memory_id, blob in (vectors.get("vectors") or {}).items()
                    if memory_id in pks
                ],
            )
        for j in seed.record_list(read("jobs.json")):
            conn.execute(
                f"INSERT INTO jobs (user_id, {_JOB_COLS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    j["job_id"],
                    j["kind"],
                    codec.dumps(j.get("payload") or {}),
                    j["status"],
                    j.get("attempts", 0),
                    j["run_after"],
                    j.get("lease_token"),
                    j.get("lease_until"),
                    j.get("last_error"),
                    None if j.get("result") is None else codec.dumps(j["result"]),
                    j["created_at"],
                    j["updated_at"],
                ),
            )

    def _load_globals(self, conn: Conn) -> None:
        store = self.files.read(self.files.inside("memvault_store.json")) or {}
        if store and store.get("format") != FORMAT:
            raise ConfigurationError(
                f"{self.files.root} holds another format's memvault_store.json"
            )
        meta = store.get("context") or {}
        conn.execute("DELETE FROM global_context")
        for key, value in (self.files.read(self.files.inside("global_context.json")) or {}).items():
            m = meta.get(key) or {}
            conn.execute(
                "INSERT INTO global_context (key, value, updated_at, updated_by) "
                "VALUES (?, ?, ?, ?)",
                (
                    key,
                    codec.dumps(value),
                    m.get("updated_at") or codec.ts(datetime.now(UTC)),
                    m.get("updated_by"),
                ),
            )
        conn.execute("DELETE FROM vector_index")
        vi = store.get("vector_index")
        if isinstance(vi, dict):
            conn.execute(
                "INSERT INTO vector_index (id, model, dimension, created_at) VALUES (1, ?, ?, ?)",
                (vi["model"], vi["dimension"], vi["created_at"]),
            )
        conn.execute("DELETE FROM api_keys")
        for k in self.files.read(self.files.inside("api_keys.json")) or []:
            conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(k.get(c) for c in _KEY_COLS.split(", ")),
            )
        conn.execute("DELETE FROM audit_log")
        audit = self.files.read_bytes(self.files.inside("audit_log.jsonl"))
        if audit:
            for line in audit.decode("utf-8").splitlines():
                if line.strip():
                    a = json.loads(line)
                    conn.execute(
                        "INSERT INTO audit_log (audit_id, at, actor, action, user_id, details) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            a["audit_id"],
                            a["at"],
                            a.get("actor"),
                            a["action"],
                            a.get("user_id"),
                            codec.dumps(a.get("details") or {}),
                        ),
                    )

    # ------------------------------------------------------------------ writing
    def _persist(self, conn: Conn) -> None:
        """Write the files of what this transaction changed (under the lock)."""
        dirty = [k for (k,) in conn.execute("SELECT DISTINCT k FROM temp.mv_dirty").fetchall()]
        if not dirty:
            return
        users = self._users  # current: `_sync` ran under this lock
        for key in dirty:
            if not key.startswith("u:"):
                continue
            user_id = key[2:]
            exists = conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone()
            folder_name = str((users.get(user_id) or {}).get("dir") or user_dir_name(user_id))
            folder = self.files.inside(folder_name)
            if exists is None:
                self.files.remove_dir(folder)
                users.pop(user_id, None)
                continue
            username = self._dump_user(conn, user_id, folder)
            entry = users.get(user_id) or {}
            gen = int(entry.get("generation", 0)) + 1
            users[user_id] = {**entry, "username": username, "dir": folder_name, "generation": gen}
        if "g" in dirty:
            self._dump_globals(conn)
        # Seed 002's shape: user id -> its entry (memvault adds `dir` and `generation`).
        self.files.write(self.files.inside("users_index.json"), users)
        self._generation = self.files.generation() + 1
        self.files.write_bytes(
            self.files.meta / "generation", str(self._generation).encode(), plain=True
        )
        conn.execute("DELETE FROM temp.mv_dirty")

    def _dump_user(self, conn: Conn, user_id: str, folder: Path) -> str | None:
        u = conn.execute(
            "SELECT user_id, username, profile, timezone, created_at, updated_at FROM users "
            "WHERE user_id = ?",
            (user_id,),
        ).fetchone()

        def w(name: str, value: Any) -> None:
            self.files.write(folder / name, value, compress=name in _COMPRESSED)

        w(
            "user_profile.json",
            {
                "user_id": u[0],
                "username": u[1],
                "created_at": u[4],
                "updated_at": u[5],
                "timezone": u[3],
                "profile": codec.loads_obj(u[2]),
            },
        )
        rows = conn.execute(
            f"SELECT {codec.MEMORY_SELECT} FROM memories AS m WHERE m.user_id = ? ORDER BY m.pk",
            (user_id,),
        ).fetchall()
        facts, permanent, other = [], [], []
        for row in rows:
            m = codec.memory_from_row(row)
            d = m.model_dump(mode="json")
            live = m.deleted_at is None and m.valid_to is None
            if live and m.namespace == FACTS_NAMESPACE and m.memory_type == "fact":
                facts.append({"id": m.memory_id, "fact": m.text, "timestamp": d["created_at"], **d})
            elif live and m.memory_type == "permanent":
                permanent.append({"id": m.memory_id, "timestamp": d["created_at"], **d})
            else:
                other.append(d)
        w("user_facts.json", facts)
        w("permanent_memories.json", permanent)
        w("memories.json", other)
        w(
            "memory_history.json",
            [
                {
                    "memory_id": r[0],
                    "version": r[1],
                    "operation": r[2],
                    "changed_at": r[3],
                    "actor": r[4],
                    "reason": r[5],
                    "snapshot": None if r[6] is None else json.loads(r[6]),
                }
                for r in conn.execute(
                    "SELECT memory_id, version, operation, changed_at, actor, reason, snapshot "
                    "FROM memory_history WHERE user_id = ? ORDER BY history_id",
                    (user_id,),
                )
            ],
        )
        w(
            "conversation_history.json",
            [
                {
                    "id": r[0],
                    "message_id": r[0],
                    "role": r[2],
                    "content": r[3],
                    "timestamp": r[5],
                    "created_at": r[5],
                    "session_id": r[1],
                    "metadata": codec.loads_obj(r[4]),
                }
                for r in conn.execute(
                    "SELECT message_id, session_id, role, content, metadata, created_at "
                    "FROM messages WHERE user_id = ? ORDER BY pk",
                    (user_id,),
                )
            ],
        )
        w(
            "sessions.json",
            [
                {
                    "session_id": r[0],
                    "user_id": user_id,
                    "agent_id": r[1],
                    "metadata": codec.loads_obj(r[2]),
                    "status": r[3],
                    "created_at": r[4],
                    "updated_at": r[5],
                    "ended_at": r[6],
                }
                for r in conn.execute(
                    "SELECT session_id, agent_id, metadata, status, created_at, updated_at, "
                    "ended_at FROM sessions WHERE user_id = ? ORDER BY created_at, session_id",
                    (user_id,),
                )
            ],
        )
        s = conn.execute(
            "SELECT content, created_at, updated_at FROM summaries WHERE user_id = ?", (user_id,)
        ).fetchone()
        summary_path = folder / "summary.json"
        if s is not None:
            w(
                "summary.json",
                {"user_id": user_id, "content": s[0], "created_at": s[1], "updated_at": s[2]},
            )
        elif summary_path.exists():
            summary_path.unlink()
        mt = self._get_metrics(conn, user_id)
        if mt is not None:
            w("interaction_metrics.json", mt.model_dump(mode="json"))
        ids = dict(conn.execute("SELECT pk, memory_id FROM memories WHERE user_id = ?", (user_id,)))
        w(
            "vectors.json",
            {
                "vectors": {
                    ids[pk]: base64.b64encode(vec).decode()
                    for pk, vec in self._user_vector_rows(conn, user_id)
                    if pk in ids
                }
            },
        )
        w(
            "jobs.json",
            [
                dict(
                    zip(
                        _JOB_COLS.split(", "),
                        [
                            *r[:2],
                            codec.loads_obj(r[2]),
                            *r[3:9],
                            None if r[9] is None else codec.loads_obj(r[9]),
                            *r[10:],
                        ],
                        strict=True,
                    )
                )
                for r in conn.execute(
                    f"SELECT {_JOB_COLS} FROM jobs WHERE user_id = ? ORDER BY job_id", (user_id,)
                )
            ],
        )
        username: str | None = u[1]
        return username

    def _dump_globals(self, conn: Conn) -> None:
        context, meta = {}, {}
        for key, value, at, by in conn.execute(
            "SELECT key, value, updated_at, updated_by FROM global_context ORDER BY key"
        ):
            context[key] = json.loads(value)
            meta[key] = {"updated_at": at, "updated_by": by}
        self.files.write(self.files.inside("global_context.json"), context)
        vi = conn.execute("SELECT model, dimension, created_at FROM vector_index").fetchone()
        self.files.write(
            self.files.inside("memvault_store.json"),
            {
                "format": FORMAT,
                "version": VERSION,
                "context": meta,
                "vector_index": None
                if vi is None
                else {"model": vi[0], "dimension": vi[1], "created_at": vi[2]},
            },
        )
        self.files.write(
            self.files.inside("api_keys.json"),
            [
                dict(zip(_KEY_COLS.split(", "), r, strict=True))
                for r in conn.execute(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY key_id")
            ],
        )
        lines = [
            json.dumps(
                {
                    "audit_id": r[0],
                    "at": r[1],
                    "actor": r[2],
                    "action": r[3],
                    "user_id": r[4],
                    "details": json.loads(r[5]),
                },
                ensure_ascii=False,
            )
            for r in conn.execute(
                "SELECT audit_id, at, actor, action, user_id, details FROM audit_log "
                "ORDER BY audit_id"
            )
        ]
        self.files.write_bytes(
            self.files.inside("audit_log.jsonl"),
            ("\n".join(lines) + "\n" if lines else "").encode(),
        )


_MEMORY_FIELDS = frozenset(Memory.model_fields)
_MESSAGE_FIELDS = frozenset(Message.model_fields)


def _memory_from(d: dict[str, Any]) -> Memory:
    return Memory.model_validate({k: v for k, v in d.items() if k in _MEMORY_FIELDS})


def _message_fields(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k in _MESSAGE_FIELDS}
    out.setdefault("created_at", d.get("timestamp"))
    return out


def _user_from(user_id: str, profile: dict[str, Any], now: datetime) -> User:
    nested = profile.get("profile")
    extra = (
        nested
        if isinstance(nested, dict)
        else {
            k: v
            for k, v in profile.items()
            if k not in ("user_id", "username", "created_at", "updated_at", "timezone")
        }
    )

    def when(value: Any) -> datetime | None:
        try:
            return seed.parse_time(value)
        except seed.SkipRow:  # a seed profile's unreadable time: the user stays
            return None

    created = when(profile.get("created_at")) or now
    return User.model_validate(
        {
            "user_id": user_id,
            "username": profile.get("username"),
            "profile": extra,
            "timezone": profile.get("timezone"),
            "created_at": created,
            "updated_at": when(profile.get("updated_at")) or created,
        }
    )
