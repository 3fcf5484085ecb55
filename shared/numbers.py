"""The dialled number of a call: the user part of the SIP `To` header, in E.164. Pure.

Carriers write the same number many ways (`sip:+18005551212@…`, `<sip:+1 (800) 555-1212@…>;tag=…`,
`tel:+1-800-555-1212;phone-context=…`, `"Sales" <sips:0018005551212@…>`), and the header is
caller-controlled, so anything that is not clearly a phone number yields None (the default
agent) rather than a guess.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)  # whole, ASCII digits only
_VISUAL_SEPARATORS = re.compile(r"[\s\-.()\[\]/]")
_SCHEMES = ("sips:", "sip:", "tel:")


def to_e164(number: str) -> str | None:
    """`+1 (800) 555-1212` → `+18005551212`; `00…` is the international prefix; digits
    without a prefix are taken as already international. None when not a number."""
    text = _VISUAL_SEPARATORS.sub("", unquote(number))
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text and not text.startswith("+"):
        text = "+" + text
    return text if _E164.fullmatch(text) else None


def user_part(header: str) -> str | None:
    """The user part of a SIP `To`/`From` header value or a bare `sip:`/`tel:` URI."""
    text = header.strip()
    if "<" in text:  # name-addr: `"Name" <uri>;tag=…`
        start = text.index("<") + 1
        end = text.find(">", start)
        text = text[start:] if end < 0 else text[start:end]
    lowered = text.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if "@" not in text and not text.lstrip().startswith("+"):
            return None
    # tel: parameters (`;phone-context=…`), sip: user parameters and URI parameters.
    user = text.split("@", 1)[0] if "@" in text else text.split(";", 1)[0]
    user = user.split(";", 1)[0].split("?", 1)[0]
    return user.strip() or None


def dialled_number(to_header: str | None) -> str | None:
    """The E.164 number a caller dialled, from the `To` header; None when there is none."""
    if not to_header:
        return None
    user = user_part(to_header)
    return to_e164(user) if user else None
