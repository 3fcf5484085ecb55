"""`shared.ids`: the one `call_id` rule is what a NATS subject token and a KV key both take."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import VALID_KEY_RE

from shared.ids import is_call_id


@given(st.text(max_size=140) | st.text(string.ascii_letters + string.digits + "_-.*>"))
def test_a_valid_call_id_is_a_subject_token_and_a_kv_key(value: str) -> None:
    if is_call_id(value):
        assert VALID_KEY_RE.fullmatch(value)
        assert not set(value) & set(".*> \t\r\n")
        assert value.isascii() and 1 <= len(value) <= 256


@pytest.mark.parametrize(
    "value", ["rtc_abc123", "rtc_probe-dash-2", "live_0a1b", "x", "a" * 256], ids=repr
)
def test_ids_openai_and_we_use_are_valid(value: str) -> None:
    assert is_call_id(value)


@pytest.mark.parametrize(
    "value",
    ["", "rtc_é", "²³", "rtc_٣", "rtc_a\n", "rtc_a.b", "rtc_*", "rtc_>", "a" * 257, "a b", 7],
    ids=repr,
)
def test_anything_else_is_not(value: object) -> None:
    assert not is_call_id(value)
