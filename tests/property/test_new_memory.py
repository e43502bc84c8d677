"""`models.new_memory_values` (the batch writer's short way to a new memory's values) means
what the model's validation means: for any item, either it declines (None) or it gives what
`NewMemory.model_validate` gives, field for field and every field; it never accepts an item
the model refuses."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memvault import limits
from memvault.models import NewMemory, new_memory_values

TEXT = st.one_of(
    st.sampled_from(["", " ", "tea", "  padded  ", "a\x00b", "\ud800", "é", "x" * 70]),
    st.text(max_size=12),
)
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(TEXT, max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    TEXT,
)
FIELDS: dict[str, Any] = {
    "content": st.one_of(TEXT, st.dictionaries(st.sampled_from(["text", "a"]), TEXT, max_size=2)),
    "namespace": st.one_of(st.sampled_from(["default", "notes", "a b", "", "x" * 200]), ODD),
    "embedding": st.one_of(
        st.none(),
        st.lists(st.floats(-1, 1, width=32), min_size=0, max_size=4),
        st.just(np.ones(3, dtype=np.float32)),
        st.just(np.ones((2, 2), dtype=np.float32)),
        st.just("1,2"),
    ),
    "memory_type": st.one_of(st.sampled_from(["note", "fact", "Fact", "x-y", "a" * 40]), ODD),
    "tags": st.one_of(st.lists(TEXT, max_size=3), ODD),
    "metadata": st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), ODD),
    "importance": st.one_of(st.floats(-1, 2), ODD),
    "category": ODD,
    "key": ODD,
    "session_id": ODD,
    "agent_id": ODD,
    "ttl_seconds": st.one_of(st.integers(-1, limits.MAX_TTL_SECONDS + 1), ODD),
    "expires_at": st.one_of(st.none(), st.just(datetime(2030, 1, 1, tzinfo=UTC))),
    "valid_from": st.none(),
    "unknown": st.integers(),
}


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=6))
    if draw(st.booleans()):
        names.add("content")
    return {name: draw(FIELDS[name]) for name in sorted(names)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(items())
def test_the_short_way_agrees_with_the_model(item: dict[str, Any]) -> None:
    short = new_memory_values(dict(item))
    try:
        full = NewMemory.model_validate(dict(item))
    except (ValidationError, ValueError):
        assert short is None  # never accepts what the model refuses
        return
    if short is None:
        return  # declined: the model validates (times, or a shape it does not check)
    assert short.keys() == full.__dict__.keys()  # add_many reads every field by name
    for name in NewMemory.model_fields:
        assert _same(short[name], getattr(full, name)), name


def test_the_usual_batch_item_takes_the_short_way() -> None:
    vec = np.ones(4, dtype=np.float32)
    made = new_memory_values({"content": "tea", "namespace": "default", "embedding": vec})
    assert made is not None
    assert made["embedding"] is vec
    assert made["tags"] == []
    assert made["metadata"] == {}
    assert new_memory_values({"content": "tea", "expires_at": None}) is not None
    late = datetime(2030, 1, 1, tzinfo=UTC)
    assert new_memory_values({"content": "tea", "expires_at": late}) is None
    assert new_memory_values({"content": "tea", "tags": None}) is None  # the model says why
