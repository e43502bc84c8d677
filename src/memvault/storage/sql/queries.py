"""Statements in SQLAlchemy Core, compiled once per shape.

Drivers execute the compiled text with named parameters, so a hot read pays neither
statement construction nor compilation. Filters become a list of conditions, each with a
token; the tuple of tokens is the cache key of the compiled listing statement.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement, TextClause

from memvault.errors import InvalidArgumentError
from memvault.models import Filters
from memvault.storage.sql import codec
from memvault.storage.sql.tables import memories, memory_history

Order = Literal["created_desc", "created_asc", "importance_desc", "updated_desc"]
PG_TEXT_CONFIG = "english"  # migration 0005's text search configuration
ORDERS: tuple[str, ...] = ("created_desc", "created_asc", "importance_desc", "updated_desc")

_m = memories.alias("m")
_MEMORY_COLS = [_m.c[name] for name in codec.MEMORY_COLUMNS]


# What scoring needs of a search candidate, before the k winners are read in full.
def _light_cols(pg: bool) -> list[Any]:
    return [
        _m.c.pk,
        _m.c.importance,
        _m.c.access_count,
        _m.c.updated_at,
        _m.c.session_id.is_not(None).label("in_session"),
        func.length(_m.c.content).label("size"),
        # The chat role a conversation memory was said in (metadata `role`; docs/search.md).
        literal_column(_meta_text(pg, "role")).label("role"),
        literal_column(_meta_text(pg, "speaker")).label("speaker"),
    ]


def _meta_text(pg: bool, key: str) -> str:
    """A metadata field's value when it is a JSON string, else NULL."""
    if pg:
        return (
            f"CASE WHEN json_typeof(m.metadata -> '{key}') = 'string' "
            f"THEN m.metadata ->> '{key}' END"
        )
    return f"json_extract(m.metadata, '$.{key}')"


LIGHT_WIDTH = len(_light_cols(False))
"""Columns of `_light_cols` (what `backend._candidate` reads); the full row follows them in
`by_pks(..., whole=True)`."""


_SORT = {
    "created_desc": (_m.c.created_at, True),
    "created_asc": (_m.c.created_at, False),
    "importance_desc": (_m.c.importance, True),
    "updated_desc": (_m.c.updated_at, True),
}


def compile_sql(stmt: ClauseElement, dialect: Dialect) -> str:
    return str(stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))


# What a new memory's row holds in the columns it usually leaves alone (the stored forms:
# `codec.memory_row`), for `Statements.insert_rows`.
NEW_ROW_DEFAULTS: dict[str, Any] = {
    "content_object": None,
    "metadata": "{}",
    "tags": "[]",
    "category": None,
    "access_count": 0,
    "last_accessed_at": None,
    "expires_at": None,
    "session_id": None,
    "agent_id": None,
    "version": 1,
    "deleted_at": None,
    "valid_from": None,
    "valid_to": None,
    "superseded_by": None,
    "content_z": None,
    "enc_key": None,
    "search_context": None,
}
# Columns a new memory's row usually fills with another column's value.
_SAME_AS = {"key": "memory_id", "updated_at": "created_at"}
_BOUND = object()


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


@dataclass
class Statements:
    """The fixed statements of one dialect, compiled once."""

    dialect: Dialect
    fts_weights: tuple[float, ...] = (1.0, 0.5, 0.3, 0.0)  # content, tags, context, owner
    _cache: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.dialect
        self.pg = d.name == "postgresql"
        mcols = list(codec.INSERT_COLUMNS)
        icols = [*mcols, "search_context"]
        insert_stmt = insert(memories).values({c: bindparam(c) for c in icols})
        self.insert_memory = compile_sql(insert_stmt, d)
        # SQLite binds a batch's rows by position, in `icols` order (`codec.memory_row`,
        # then the search context): 27 values by name cost 3.5 us a row more.
        self.insert_memory_positional: str | None = None
        if not self.pg:
            quoted = ", ".join(f'"{c}"' for c in icols)
            marks = ", ".join("?" for _ in icols)
            self.insert_memory_positional = f"INSERT INTO memories ({quoted}) VALUES ({marks})"
        self._icols = tuple(icols)
        self.pks_after = "SELECT memory_id, pk FROM memories WHERE pk > :pk"
        self.insert_vector = (
            "INSERT INTO memory_vectors (memory_pk, user_id, vector) "
            "VALUES (:memory_pk, :user_id, :vector)"
        )
        self.session_tail = (
            "SELECT pk, content, search_context FROM memories WHERE user_id = :user_id "
            "AND session_id = :session_id AND deleted_at IS NULL ORDER BY pk DESC LIMIT :n"
        )
        self.set_context = "UPDATE memories SET search_context = :ctx WHERE pk = :pk"
        # For each memory of `:pks` (a JSON text on SQLite, an array on PostgreSQL), the
        # memory said just before and just after it in its session, in one statement.
        _same_session = (
            "FROM memories n WHERE n.user_id = c.user_id AND n.session_id = c.session_id "
            "AND n.deleted_at IS NULL"
        )
        keys = (
            "FROM memories AS c WHERE c.pk = ANY(CAST(:pks AS bigint[]))"
            if self.pg
            else "FROM memories AS c NOT INDEXED WHERE c.pk IN (SELECT value FROM json_each(:pks))"
        )
        self.session_around = (
            f"SELECT c.pk, (SELECT n.pk {_same_session} AND n.pk < c.pk ORDER BY n.pk DESC "
            f"LIMIT 1), (SELECT n.pk {_same_session} AND n.pk > c.pk ORDER BY n.pk LIMIT 1) "
            f"{keys} AND c.user_id = :user_id"
        )
        self.max_pk = "SELECT coalesce(max(pk), 0) FROM memories"
        self.update_memory = compile_sql(
            update(memories)
            .where(memories.c.memory_id == bindparam("b_memory_id"))
            .values(
                {
                    c: bindparam(c)
                    for c in mcols
                    if c not in ("memory_id", "user_id", "access_count", "last_accessed_at")
                }
            ),
            d,
        )
        self.insert_history = compile_sql(
            insert(memory_history).values(
                {
                    c: bindparam(c)
                    for c in (
                        "memory_id",
                        "user_id",
                        "version",
                        "operation",
                        "changed_at",
                        "actor",
                        "reason",
                        "snapshot",
                    )
                }
            ),
            d,
        )
        self.freeze_history = compile_sql(
            update(memory_history)
            .where(
                memory_history.c.memory_id == bindparam("memory_id"),
                memory_history.c.version == bindparam("version"),
            )
            .values(snapshot=bindparam("snapshot")),
            d,
        )
        self.select_by_id = compile_sql(
            select(*_MEMORY_COLS).where(
                _m.c.user_id == bindparam("user_id"), _m.c.memory_id == bindparam("memory_id")
            ),
            d,
        )
        self.select_live_key = compile_sql(
            select(*_MEMORY_COLS).where(
                _m.c.user_id == bindparam("user_id"),
                _m.c.namespace == bindparam("namespace"),
                _m.c.key == bindparam("key"),
                _m.c.deleted_at.is_(None),
            ),
            d,
        )
        self.select_history = compile_sql(
            select(
                memory_history.c.history_id,
                memory_history.c.memory_id,
                memory_history.c.version,
                memory_history.c.operation,
                memory_history.c.changed_at,
                memory_history.c.actor,
                memory_history.c.reason,
                memory_history.c.snapshot,
            )
            .where(
                memory_history.c.user_id == bindparam("user_id"),
                memory_history.c.memory_id == bindparam("memory_id"),
            )
            .order_by(memory_history.c.history_id),
            d,
        )
        last = memories.c.last_accessed_at
        self.bump_access = compile_sql(
            update(memories)
            .where(memories.c.pk == bindparam("b_pk"))
            .values(
                access_count=memories.c.access_count + bindparam("n"),
                # The later of the stored and the new time (PostgreSQL's greatest() skips
                # NULL; SQLite's two-argument max() would return it).
                last_accessed_at=(
                    func.greatest(last, func.cast(bindparam("at"), last.type))
                    if self.pg
                    else func.coalesce(
                        func.max(func.coalesce(last, literal_column("''")), bindparam("at")),
                        bindparam("at"),
                    )
                ),
            ),
            d,
        )
        self.delete_memory_pk = compile_sql(
            delete(memories).where(memories.c.pk == bindparam("pk")), d
        )

    def insert_rows(self, rows: list[tuple[Any, ...]]) -> tuple[str, list[tuple[Any, ...]]]:
        """SQLite: an insert of these memory rows (`insert_memory_positional`'s order) that
        binds only what some row of the batch sets: a column every row leaves at its new
        memory's default (`NEW_ROW_DEFAULTS`) is written as a constant, `key` when it is
        the memory id and `updated_at` when it is `created_at` by the same value. A new
        memory sets 8 to 10 of 27 columns, and each value bound costs the batch writer:
        rows of the peer benchmark's memories with memvault's indexes, 100 a transaction,
        took 15-24 us a row binding 27 values and 9-13 binding 9 (raw `sqlite3`, same
        rows, alternating); 12% fewer instructions a memory of the peer benchmark's ingest
        (`bench/bench_peer_ingest.py --instructions`). One statement a shape, compiled
        once; the rows are returned projected to it."""
        cols = self._icols
        if not rows:
            return self.insert_memory_positional or self.insert_memory, rows
        by_column = list(zip(*rows, strict=True))
        n = len(rows)
        kept: list[int] = []
        shape: list[Any] = []
        for i, name in enumerate(cols):
            column = by_column[i]
            default = NEW_ROW_DEFAULTS.get(name, _BOUND)
            if default is not _BOUND:
                constant = column.count(default) == n
            else:
                other = _SAME_AS.get(name)
                constant = other is not None and column == by_column[cols.index(other)]
            if constant:
                shape.append(name)
            else:
                kept.append(i)
        key = ("insert", *shape)
        sql = self._cache.get(key)
        if sql is None:
            marks = {cols[i]: f"?{j}" for j, i in enumerate(kept, 1)}
            values = []
            for name in cols:
                if name in marks:
                    values.append(marks[name])
                elif name in _SAME_AS:
                    values.append(marks[_SAME_AS[name]])
                else:
                    values.append(_literal(NEW_ROW_DEFAULTS[name]))
            quoted = ", ".join(f'"{c}"' for c in cols)
            sql = f"INSERT INTO memories ({quoted}) VALUES ({', '.join(values)})"
            self._cache[key] = sql
        if len(kept) == len(cols):
            return sql, rows
        pick = itemgetter(*kept)
        return sql, [pick(r) for r in rows]

    def select_by_ids(self, count: int) -> str:
        key = ("by_ids", count)
        sql = self._cache.get(key)
        if sql is None:
            sql = compile_sql(
                select(*_MEMORY_COLS).where(
                    _m.c.user_id == bindparam("user_id"),
                    _m.c.memory_id.in_([bindparam(f"id_{i}") for i in range(count)]),
                ),
                self.dialect,
            )
            self._cache[key] = sql
        return sql

    def listing(
        self, filters: Filters, order: str, cursor: tuple[Any, int] | None, limit: int
    ) -> tuple[str, dict[str, Any]]:
        """The listing statement for these filters (compiled once per shape) and its params."""
        conds, tokens, params = visibility(filters, self.pg)
        sort_col, desc = _SORT[order]
        if cursor is not None:
            tokens.append(("cursor", order))
            params["c_sort"], params["c_pk"] = cursor
            op_lt = desc
            conds.append(_keyset(sort_col, op_lt))
        params["limit"] = limit
        key = ("list", order, *tokens)
        sql = self._cache.get(key)
        if sql is None:
            stmt: Select[Any] = select(*_MEMORY_COLS).where(*[c() for c in conds])
            if desc:
                stmt = stmt.order_by(sort_col.desc(), _m.c.pk.desc())
            else:
                stmt = stmt.order_by(sort_col.asc(), _m.c.pk.asc())
            sql = compile_sql(stmt, self.dialect) + "\nLIMIT :limit"
            self._cache[key] = sql
        return sql, params

    def by_pks(
        self, filters: Filters, n: int, light: bool = False, whole: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """One user's visible rows among `:pk_0 .. :pk_{n-1}`: full rows, or with `light`
        the scoring columns of vector candidates (`_light_cols`), followed with `whole` by
        the full row's columns (`LIGHT_WIDTH` onwards)."""
        conds, tokens, params = visibility(filters, self.pg)
        key = ("by_pks", n, light, whole, *tokens)
        sql = self._cache.get(key)
        if sql is None:
            cols = _light_cols(self.pg) if light else []
            if whole or not light:
                cols += _MEMORY_COLS
            stmt = select(*cols).where(
                _m.c.pk.in_([bindparam(f"pk_{i}") for i in range(n)]), *[c() for c in conds]
            )
            sql = compile_sql(stmt, self.dialect)
            if self.dialect.name == "sqlite":
                # Look rows up by primary key, always: with a few dozen keys and no
                # statistics, SQLite's planner would rather walk the user's index, every
                # row of it (13 ms for a user with 100k memories, 0.1 ms by key).
                sql = sql.replace("FROM memories AS m", "FROM memories AS m NOT INDEXED", 1)
            self._cache[key] = sql
        return sql, params

    @property
    def fts_top(self) -> str:
        """The `:n` best full-text rows for the MATCH `:q`: (pk, bm25), best first."""
        w = ", ".join(str(x) for x in self.fts_weights)
        return (
            f"SELECT rowid, bm25(memories_fts, {w}) AS score FROM memories_fts "
            "WHERE memories_fts MATCH :q ORDER BY score LIMIT :n"
        )

    def lexical(self, filters: Filters, k: int) -> tuple[str, dict[str, Any]]:
        """Full-text (FTS5 BM25) statement for one user's visible rows; `:q` is the MATCH."""
        conds, tokens, params = visibility(filters, self.pg)
        params["k"] = k
        key = ("lexical", *tokens)
        sql = self._cache.get(key)
        if sql is None:
            fts = table("memories_fts", column("rowid"))
            w = ", ".join(str(x) for x in self.fts_weights)
            score: ColumnElement[Any] = literal_column(f"bm25(memories_fts, {w})")
            stmt = (
                select(*_light_cols(self.pg), score.label("score"))
                .select_from(fts.join(_m, _m.c.pk == fts.c.rowid))
                .where(literal_column("memories_fts").op("MATCH")(bindparam("q")))
                .where(*[c() for c in conds])
                .order_by(score)
            )
            sql = compile_sql(stmt, self.dialect) + "\nLIMIT :k"
            self._cache[key] = sql
        return sql, params

    def pg_lexical(self, filters: Filters, split: bool = False) -> tuple[str, dict[str, Any]]:
        """PostgreSQL full-text statement: one user's visible rows matching `to_tsquery(:q)`,
        ranked by `ts_rank` with the column weights of SQLite's bm25 (content, tags, search
        context), best first, `:k` rows. `split`: rows are selected by `:s` (the rarest
        words) and still ranked by `:q` (every word), as on SQLite past the lexical budget."""
        conds, tokens, params = visibility(filters, True)
        key = ("pg_lexical", split, *tokens)
        sql = self._cache.get(key)
        if sql is None:
            c, t, x = self.fts_weights[:3]
            query = f"to_tsquery('{PG_TEXT_CONFIG}', :q)"
            select_by = f"to_tsquery('{PG_TEXT_CONFIG}', :s)" if split else query
            rank = f"ts_rank('{{0, {x}, {t}, {c}}}', m.search_tsv, {query}, 1)"
            score: ColumnElement[Any] = literal_column(rank)
            # Rank first, then read the scoring columns of the k winners only (the JSON
            # of `role` and `speaker` is parsed for k rows, not for every match).
            inner = (
                select(_m.c.pk, score.label("score"))
                .select_from(_m)
                .where(text(f"m.search_tsv @@ {select_by}"), *[c() for c in conds])
                .order_by(score.desc(), _m.c.pk)
            )
            outer = select(*_light_cols(True), literal_column("c.score")).select_from(_m)
            light = compile_sql(outer, self.dialect).replace(
                "FROM memories AS m",
                f"FROM ({compile_sql(inner, self.dialect)} LIMIT :k) AS c "
                "JOIN memories AS m ON m.pk = c.pk",
                1,
            )
            sql = light + "\nORDER BY c.score DESC, m.pk"
            self._cache[key] = sql
        return sql, params

    def pg_vector(self, filters: Filters, indexed: int | None) -> tuple[str, dict[str, Any]]:
        """PostgreSQL vector statement: one user's visible rows by cosine distance to `:qv`
        (pgvector `<=>`), nearest first, `:k` rows, with the distance (the sort then carries
        the distance, not the 1.5 KB vector).

        `indexed` (a dimension): the distance is taken on `vector::vector(<dimension>)`,
        the expression of the HNSW index, and the user is matched in a form no B-tree
        serves (`user_id || ''`), so the plan walks the HNSW index (with iterative scan)
        instead of sorting every vector of the user. Else the index cannot serve the
        order and the search is exact."""
        conds, tokens, params = visibility(filters, True)
        key = ("pg_vector", indexed, *tokens)
        sql = self._cache.get(key)
        if sql is None:
            if indexed:
                v = table("memory_vectors", column("memory_pk"), column("user_id")).alias("v")
                vec = f"(v.vector::vector({int(indexed)}))"
                distance: ColumnElement[Any] = literal_column(f"({vec} <=> :qv)")
                # The memory's user is the vector's: only the vector's is tested, in a
                # form no B-tree serves.
                stmt = (
                    select(*_light_cols(True), distance.label("distance"))
                    .select_from(v.join(_m, _m.c.pk == v.c.memory_pk))
                    .where(
                        literal_column("(v.user_id || '')") == bindparam("user_id"),
                        *[c() for c in conds[1:]],
                    )
                    .order_by(literal_column("distance"))
                )
                sql = compile_sql(stmt, self.dialect) + "\nLIMIT :k"
            else:
                # The user's vectors first, by the (user_id, seq) index, each distance
                # computed once (a materialised CTE), whatever the planner's statistics
                # say; only the distance travels on to the join and the sort, not the
                # vector. As a subquery (OFFSET 0), a table whose statistics said "one
                # row" (a new or fast-growing store) got a nested loop that ran the
                # subquery again for every memory of the user: 9.2 ms for a 200-memory
                # user and 944 ms for a 2,000-memory one, 0.56 and 2.8 ms as a CTE (0.48
                # -> 0.51 and 5.3 -> 5.1 ms with fresh statistics).
                near = table("near", column("memory_pk"), column("distance")).alias("c")
                stmt = (
                    select(*_light_cols(True), near.c.distance)
                    .select_from(near.join(_m, _m.c.pk == near.c.memory_pk))
                    .where(*[c() for c in conds])
                    .order_by(near.c.distance)
                )
                sql = (
                    "WITH near AS MATERIALIZED (SELECT v.memory_pk, (v.vector <=> :qv) AS "
                    "distance FROM memory_vectors AS v WHERE v.user_id = :user_id)\n"
                    + compile_sql(stmt, self.dialect)
                    + "\nLIMIT :k"
                )
            self._cache[key] = sql
        return sql, params


Cond = Callable[[], ColumnElement[bool] | TextClause]


def _keyset(sort_col: Any, desc: bool) -> Cond:
    def build() -> ColumnElement[bool]:
        s: Any = bindparam("c_sort")
        p: Any = bindparam("c_pk")
        if desc:
            return or_(sort_col < s, and_(sort_col == s, _m.c.pk < p))
        return or_(sort_col > s, and_(sort_col == s, _m.c.pk > p))

    return build


_VISIBILITY: dict[tuple[Filters, bool], tuple[list[Cond], list[Any], dict[str, Any]]] = {}
_VISIBILITY_KEPT = 256  # filter sets remembered (the cache starts over when full)


def visibility(filters: Filters, pg: bool = False) -> tuple[list[Cond], list[Any], dict[str, Any]]:
    """Conditions for one user's rows under `filters`; `:user_id` and `:now` are bound by the
    caller. Returns builders (called only when the shape is compiled), tokens and params
    (the caller's own copies). `pg`: PostgreSQL's JSON operators instead of SQLite's, with
    SQLite's meaning. Hashable filters (no list or mapping in them, the common case: none
    at all) are worked out once (`Filters` is frozen)."""
    try:
        key = (filters, pg)
        known = _VISIBILITY.get(key)
    except TypeError:  # a list or a mapping in the filters
        return _visibility(filters, pg)
    if known is None:
        if len(_VISIBILITY) >= _VISIBILITY_KEPT:
            _VISIBILITY.clear()
        known = _VISIBILITY[key] = _visibility(filters, pg)
    return list(known[0]), list(known[1]), dict(known[2])  # callers add to them


def _visibility(filters: Filters, pg: bool) -> tuple[list[Cond], list[Any], dict[str, Any]]:
    conds: list[Cond] = [lambda: _m.c.user_id == bindparam("user_id")]
    tokens: list[Any] = []
    params: dict[str, Any] = {}
    f = filters
    if not f.include_deleted:
        tokens.append("live")
        conds.append(lambda: _m.c.deleted_at.is_(None))
    if not f.include_expired:
        tokens.append("unexpired")
        conds.append(lambda: or_(_m.c.expires_at.is_(None), _m.c.expires_at > bindparam("now")))
    if f.as_of is not None:
        # What held then: begun (valid_from, or stored) by then and not yet ended.
        tokens.append("as_of")
        params["as_of"] = _time_param(f.as_of)
        conds.append(
            lambda: and_(
                func.coalesce(_m.c.valid_from, _m.c.created_at) <= bindparam("as_of"),
                or_(_m.c.valid_to.is_(None), _m.c.valid_to > bindparam("as_of")),
            )
        )
    elif not f.include_superseded:
        tokens.append("valid")
        conds.append(lambda: or_(_m.c.valid_to.is_(None), _m.c.valid_to > bindparam("now")))

    def add_in(name: str, column: Any, values: Sequence[Any]) -> None:
        tokens.append((name, len(values)))
        names = [f"{name}_{i}" for i in range(len(values))]
        params.update(zip(names, values, strict=True))
        conds.append(lambda: column.in_([bindparam(n) for n in names]))

    def add_cmp(name: str, column: Any, value: Any, op: str) -> None:
        tokens.append((name, op))
        params[name] = value
        ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
            "eq": lambda c, p: c == p,
            "ge": lambda c, p: c >= p,
            "lt": lambda c, p: c < p,
        }
        conds.append(lambda: ops[op](column, bindparam(name)))

    if f.namespaces:
        add_in("ns", _m.c.namespace, f.namespaces)
    if f.memory_types:
        add_in("mt", _m.c.memory_type, f.memory_types)
    if f.category is not None:
        add_cmp("category", _m.c.category, f.category, "eq")
    if f.session_id is not None:
        add_cmp("session_id", _m.c.session_id, f.session_id, "eq")
    if f.agent_id is not None:
        add_cmp("agent_id", _m.c.agent_id, f.agent_id, "eq")
    if f.min_importance is not None:
        add_cmp("min_importance", _m.c.importance, f.min_importance, "ge")
    for name, col, value, op in (
        ("created_after", _m.c.created_at, f.created_after, "ge"),
        ("created_before", _m.c.created_at, f.created_before, "lt"),
        ("updated_after", _m.c.updated_at, f.updated_after, "ge"),
        ("updated_before", _m.c.updated_at, f.updated_before, "lt"),
    ):
        if value is not None:
            add_cmp(name, col, _time_param(value), op)
    if f.tags_any:
        names = [f"tany_{i}" for i in range(len(f.tags_any))]
        params.update(zip(names, f.tags_any, strict=True))
        tokens.append(("tags_any", len(names)))
        if pg:  # @> uses the GIN index on tags
            any_sql = " OR ".join(f"m.tags @> jsonb_build_array(CAST(:{n} AS text))" for n in names)
            conds.append(lambda: text(f"({any_sql})"))
        else:
            placeholders = ", ".join(f":{n}" for n in names)
            conds.append(
                lambda: text(
                    "EXISTS (SELECT 1 FROM json_each(m.tags) AS t "
                    f"WHERE t.value IN ({placeholders}))"
                )
            )
    for i, tag in enumerate(f.tags_all or ()):
        params[f"tall_{i}"] = tag
        tokens.append(("tags_all", i))
        sql = (
            f"m.tags @> jsonb_build_array(CAST(:tall_{i} AS text))"
            if pg
            else f"EXISTS (SELECT 1 FROM json_each(m.tags) AS t WHERE t.value = :tall_{i})"
        )
        conds.append(lambda sql=sql: text(sql))  # type: ignore[misc]
    for i, (mkey, mval) in enumerate(sorted((f.metadata or {}).items())):
        params[f"mk_{i}"] = mkey if pg else '$."' + mkey.replace('"', '\\"') + '"'
        if mval is None:
            tokens.append(("meta_null", i))
            sql = _pg_meta_null(i) if pg else f"json_extract(m.metadata, :mk_{i}) IS NULL"
            conds.append(lambda sql=sql: text(sql))  # type: ignore[misc]
        elif isinstance(mval, dict):
            for op, bound in sorted(mval.items()):
                name = f"mr_{i}_{op}"
                params[name] = bound
                tokens.append(("meta_range", i, op, pg and isinstance(bound, str)))
                sql = (
                    _pg_meta_compare(i, name, op, isinstance(bound, str))
                    if pg
                    else f"json_extract(m.metadata, :mk_{i}) {_RANGE_SQL[op]} :{name}"
                )
                conds.append(lambda sql=sql: text(sql))  # type: ignore[misc]
        else:
            params[f"mv_{i}"] = int(mval) if isinstance(mval, bool) else mval
            tokens.append(("meta_eq", i, pg and isinstance(mval, str)))
            sql = (
                _pg_meta_compare(i, f"mv_{i}", "eq", isinstance(mval, str))
                if pg
                else f"json_extract(m.metadata, :mk_{i}) = :mv_{i}"
            )
            conds.append(lambda sql=sql: text(sql))  # type: ignore[misc]
    return conds, tokens, params


_RANGE_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "ne": "IS NOT"}


# PostgreSQL: SQLite's meaning of `json_extract(metadata, key) <op> value`. SQLite gives a
# JSON string as TEXT, a number as a number, true/false as 1/0, and orders NULL < numbers <
# TEXT; text compares byte by byte (COLLATE "C" here).
def _pg_field(i: int) -> str:
    return f"(m.metadata -> CAST(:mk_{i} AS text))"


def _pg_meta_null(i: int) -> str:
    f = _pg_field(i)
    return f"({f} IS NULL OR json_typeof({f}) = 'null')"


def _pg_meta_compare(i: int, param: str, op: str, text_bound: bool) -> str:
    f = _pg_field(i)
    kind = f"json_typeof({f})"
    as_text = f"(CASE WHEN {kind} = 'string' THEN {f} #>> '{{}}' END)"
    as_num = (
        f"(CASE {kind} WHEN 'number' THEN ({f} #>> '{{}}')::float8 "
        f"WHEN 'boolean' THEN (CASE WHEN ({f} #>> '{{}}') = 'true' THEN 1.0 ELSE 0.0 END) END)"
    )
    is_text = f"({kind} IN ('string', 'object', 'array'))"
    is_num = f"({kind} IN ('number', 'boolean'))"
    value = f'{as_text} COLLATE "C"' if text_bound else as_num
    bound = f'CAST(:{param} AS text) COLLATE "C"' if text_bound else f"CAST(:{param} AS float8)"
    if op == "eq":
        return f"{value} = {bound}"
    if op == "ne":
        return f"{value} IS DISTINCT FROM {bound}"
    cmp = f"{value} {_RANGE_SQL[op]} {bound}"
    # Across types SQLite orders numbers below text.
    if op in ("gt", "gte") and not text_bound:
        return f"({cmp} OR {is_text})"
    if op in ("lt", "lte") and text_bound:
        return f"({cmp} OR {is_num})"
    return cmp


def _time_param(value: datetime) -> str | None:
    return codec.ts(value)


def encode_cursor(order: str, sort_value: Any, pk: int) -> str:
    raw = json.dumps([order, sort_value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[Any, int]:
    """Parse a cursor made by `encode_cursor` for the same order, or raise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        got_order, sort_value, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError("cursor is malformed; pass next_cursor back unchanged") from exc
    if got_order != order or not isinstance(pk, int) or isinstance(pk, bool):
        raise InvalidArgumentError(
            "cursor belongs to another listing order; pass next_cursor back unchanged",
            {"order": order},
        )
    if not isinstance(sort_value, str | float | int):
        raise InvalidArgumentError("cursor is malformed; pass next_cursor back unchanged")
    return sort_value, pk
