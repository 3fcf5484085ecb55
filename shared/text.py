"""Untrusted text (SIP headers, transcripts, tool output) made safe to store and to show.

One rule says which characters are invisible or dangerous: every Unicode control (Cc),
format (Cf: bidirectional marks and overrides, soft hyphen, zero-width characters, tag
characters U+E0000…), private-use (Co), surrogate (Cs) and line/paragraph separator
(Zl, Zp) character, plus the rest of Unicode's Default_Ignorable_Code_Point set
(DerivedCoreProperties.txt), which renders as nothing though some of it are letters
(U+3164 HANGUL FILLER) or marks (variation selectors). `strip_invisible` removes them (SIP
headers, before they reach events, logs and the agent hook); `for_terminal` shows them
as escapes (the dev console), so nothing a caller or a tool says can move the cursor,
recolour, reorder or hide text in an operator's terminal.
"""

from __future__ import annotations

import re
import unicodedata

_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp"})
# Default_Ignorable_Code_Point (Unicode 15.1), whatever their category.
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def is_invisible(char: str) -> bool:
    """True for a character `strip_invisible` removes."""
    return unicodedata.category(char) in _CATEGORIES or _IGNORABLE.match(char) is not None


def _plain(text: str) -> bool:
    """Printable ASCII only: the common case, decided without looking at each character."""
    return text.isascii() and text.isprintable()


def strip_invisible(text: str) -> str:
    """`text` without any invisible or control character."""
    if _plain(text):
        return text
    return "".join(char for char in text if not is_invisible(char))


def for_terminal(text: str) -> str:
    """`text` with every invisible or control character written as an escape (`\\x1b`,
    `\\n`, `\\u202e`), so that it shows as it is and does nothing to the terminal."""
    if _plain(text):
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii") if is_invisible(char) else char
        for char in text
    )
