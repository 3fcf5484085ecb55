"""The one rule for a `call_id`, at every entry point (webhook, control API, events, KV).

A call id becomes a NATS subject token (`calls.events.<call_id>`, `calls.control.<call_id>`)
and a KV key (`call_leases`, `call_claims`). A subject token may not hold `.`, `*`, `>` or
white space; a KV key is `[-/_=.a-zA-Z0-9]+`. Their intersection, without `.` (a token
separator) and `/` and `=`, is `[A-Za-z0-9_-]`: OpenAI's `rtc_…` and `live_…` ids fit, as
do our own. Matched in full and in ASCII only (`str.isalnum` also accepts `é` or `٣`,
which KV refuses). Anything else is refused where it enters: a 400 for a webhook, a 404
for the control API, never a 500.
"""

from __future__ import annotations

import re

MAX_CALL_ID = 256  # a Live session id is `live_` + up to 128 characters
CALL_ID_PATTERN = rf"[A-Za-z0-9_-]{{1,{MAX_CALL_ID}}}"
_CALL_ID = re.compile(CALL_ID_PATTERN, re.ASCII)
# A part of a KV key made of another id (a tool call id): KV's characters, without `.`
# (our separator) and `/`.
_KEY_PART = re.compile(r"[A-Za-z0-9_=-]+", re.ASCII)


def is_call_id(value: object) -> bool:
    """True for a string that is a valid call id, whole (no trailing newline)."""
    return isinstance(value, str) and _CALL_ID.fullmatch(value) is not None


def fullmatch_key(value: str, max_length: int) -> bool:
    """True when `value` may be used as a part of a KV key as it is, whole."""
    return 0 < len(value) <= max_length and _KEY_PART.fullmatch(value) is not None
