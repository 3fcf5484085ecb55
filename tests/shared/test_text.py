"""`shared.text`: one rule for the characters untrusted text may not carry."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.text import for_terminal, is_invisible, strip_invisible

# What the probe of issue 22 (item 7) got through, and the classes the README names.
INVISIBLE = [
    "\u061c",  # ARABIC LETTER MARK (bidirectional)
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "\u00ad",  # SOFT HYPHEN
    "\ufff9",  # INTERLINEAR ANNOTATION ANCHOR
    "\u180e",  # MONGOLIAN VOWEL SEPARATOR
    "\u3164",  # HANGUL FILLER (a letter that shows nothing)
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u200b",  # ZERO WIDTH SPACE
    "\u2028",  # LINE SEPARATOR
    "\ue000",  # private use
    "\U000f0000",  # private use, plane 15
    "\x00",
    "\x1b",
    "\x85",  # NEL
    "\ufe0f",  # VARIATION SELECTOR-16
]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_each_invisible_character_is_removed(char: str) -> None:
    assert strip_invisible(f"Ali{char}ce") == "Alice"
    assert "\\" in for_terminal(char)


def test_visible_text_of_any_script_is_kept() -> None:
    text = "Zoë Müller 日本語 עברית العربية 😀 +61 (2) 9000-0000 <sip:x@y>;tag=1"
    assert strip_invisible(text) == text
    assert for_terminal(text) == text


@given(st.text())
def test_no_character_of_the_removed_classes_survives(text: str) -> None:
    stripped = strip_invisible(text)
    assert not any(
        unicodedata.category(c) in {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"} for c in stripped
    )
    assert all(not is_invisible(c) for c in stripped)
    assert all(not is_invisible(c) for c in for_terminal(text))
