"""`shared.limits.shrink`: whatever goes in, what comes out fits the budget, and what
already fits is left alone."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.limits import TRUNCATED, json_size, shrink

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=10), children, max_size=8)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=8), st.integers(0, 2000))
def test_shrunk_data_fits_its_budget(data: dict[str, Any], budget: int) -> None:
    shrunk = shrink(data, budget)
    assert json_size(shrunk) <= max(budget, 2)  # `{}` is the least an object can be
    if json_size(data) <= budget:
        assert shrunk == data


def test_the_biggest_member_is_cut_and_the_small_ones_kept() -> None:
    report = {
        "end_reason": "caller_hangup",
        "transcript": [{"speaker": "caller", "text": "x" * 1000} for _ in range(100)],
        "tools": [],
    }
    shrunk = shrink(report, 20_000)
    assert shrunk["end_reason"] == "caller_hangup" and shrunk["tools"] == []
    assert shrunk["transcript"][-1] == TRUNCATED
    assert 1 < len(shrunk["transcript"]) < 100
    assert json_size(shrunk) <= 20_000


def test_a_long_text_keeps_its_beginning() -> None:
    assert shrink("é" * 100, 12) == "é" * 3 + TRUNCATED  # 2 quotes + 6 + 3 bytes
