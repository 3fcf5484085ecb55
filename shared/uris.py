"""Which transfer targets are dialable: `tel:` and `sip:`/`sips:` URIs, printable ASCII,
matched whole (a `$` would let a final newline through to OpenAI's REFER and the events).
Used for operator targets and for the agents file's `targets`."""

from __future__ import annotations

import re

_DIALABLE = re.compile(r"tel:\+?[0-9][0-9().\- ]{2,31}|sips?:[\x21-\x7e]{3,253}", re.ASCII)
_NOT_IN_A_SIP_URI = frozenset('<>"')


def is_dialable(uri: str) -> bool:
    """A `tel:` or `sip:` URI a call may be transferred to."""
    return _DIALABLE.fullmatch(uri) is not None and not (_NOT_IN_A_SIP_URI & set(uri))
