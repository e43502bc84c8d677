"""The Python metadata filter (used by stores that encrypt metadata) means what the SQL
filter means: the same metadata and filters, matched by `metadata_matches` and by SQLite's
`json_extract` the way `queries.visibility` writes it."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memvault.storage.meta_match import metadata_matches
from memvault.storage.sql.queries import _RANGE_SQL

KEYS = st.sampled_from(["a", "b", "c d", "é"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False, width=32),
    st.sampled_from(["", "a", "b", "B", "é", "10", "2"]),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(KEYS, SCALARS, max_size=1)
)
BOUNDS = st.one_of(
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False, width=32),
    st.sampled_from(["a", "b", "2"]),
)
WANTED = st.one_of(
    st.none(),
    st.booleans(),
    BOUNDS,
    st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte", "ne"]), BOUNDS, min_size=1),
)

_db = sqlite3.connect(":memory:")


def _sql_matches(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    conds: list[str] = []
    params: dict[str, Any] = {"m": json.dumps(metadata, ensure_ascii=False)}

    def bind(value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f":{name}"

    for key, want in sorted(wanted.items()):
        field = f"json_extract(:m, {bind('$.' + chr(34) + key + chr(34))})"
        if want is None:
            conds.append(f"{field} IS NULL")
        elif isinstance(want, dict):
            conds += [f"{field} {_RANGE_SQL[op]} {bind(b)}" for op, b in sorted(want.items())]
        else:
            conds.append(f"{field} = {bind(int(want) if isinstance(want, bool) else want)}")
    if not conds:
        return True
    return _db.execute("SELECT 1 WHERE " + " AND ".join(conds), params).fetchone() is not None


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=4), st.dictionaries(KEYS, WANTED, max_size=3))
def test_python_filter_matches_sqlite(metadata: dict[str, Any], wanted: dict[str, Any]) -> None:
    assert metadata_matches(metadata, wanted) == _sql_matches(metadata, wanted)


def test_a_key_sqlite_cannot_name_is_refused() -> None:
    import pytest

    from memvault.errors import InvalidArgumentError
    from memvault.service import validate

    with pytest.raises(InvalidArgumentError, match="must not contain"):
        validate.filters({"metadata": {'say "hi"': 1}})
