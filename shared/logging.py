"""Structured logging: one JSON object per line, carrying the call it concerns.

`call_id`, `webhook_id` and `worker` are bound in context variables so every line logged
while handling a call carries them without threading them through every call. `LOG_FORMAT=text`
(what `switchboard dev` and `make run` use) prints the same fields as `key=value` after a
readable message. Anything that looks like a credential is masked in both formats, as a
last line of defence: secrets must never reach a log line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from shared.text import is_invisible

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "switchboard_log_context", default=None
)
# The controls and invisible characters of old (kept for importers); `shared.text` has the
# whole rule, which `clean` applies.
UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# OpenAI API keys, webhook secrets, bearer tokens (the control API's, OpenAI's).
_SECRETS = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|whsec_[A-Za-z0-9+/=]{8,})|(?<=Bearer )\S+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with anything shaped like an API key, webhook secret or bearer token masked."""
    return _SECRETS.sub(REDACTED, text)


def clean(text: str, limit: int = 256) -> str:
    """Untrusted text made safe for a log line: no control or invisible character (each
    becomes "?", by the rule of `shared.text`), bounded length."""
    text = text[: limit + 1]
    text = "".join("?" if is_invisible(char) else char for char in text)
    return text if len(text) <= limit else text[:limit] + "…"


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Bind fields (e.g. `call_id`) to every log line emitted inside the block."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Bind fields for the rest of the current task (tasks copy the context they start in)."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **(_context.get() or {}),
        }
        extra = getattr(record, "fields", None)
        if extra:
            line.update({k: redact(v) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {**(_context.get() or {}), **(getattr(record, "fields", None) or {})}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        text = f"{stamp} {record.levelname:<5} {record.name}: {record.getMessage()} {tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text.rstrip())


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpx2", "websockets", "faststream", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`logger.info("…", extra=fields(status=404))`: structured fields for one line."""
    return {"fields": values}
