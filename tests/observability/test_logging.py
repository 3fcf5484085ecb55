"""Log lines: one JSON object each, carrying the call, the webhook and the worker they
concern, readable as text for `switchboard dev`, and never carrying a secret."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.logging import JsonFormatter, TextFormatter, bound, fields
from simulator import CallerScript
from tests.stack import API_KEY, Stack

SHORT_CALL = CallerScript.model_validate(
    {"name": "short", "steps": [{"say": "Hello?", "reply": "Hi!"}, {"hangup": True}]}
)


class JsonLines(logging.Handler):
    """Every INFO+ line, formatted as production formats it (in the context it was logged
    in, which is where the bound call fields live), with a wait for a wanted line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.text: list[str] = []
        self._added = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))
        self._added.set()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.text]

    async def wait_for(self, wanted: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not any(wanted(line) for line in self.lines()):
                self._added.clear()
                await self._added.wait()


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_call_lines_carry_call_webhook_and_worker(
    stack: Stack, json_lines: JsonLines
) -> None:
    assert stack.simulator is not None
    workers = {worker.worker_id for worker in stack.session_workers}
    call = await stack.simulator.place_call(SHORT_CALL)

    def from_worker(line: dict[str, Any]) -> bool:
        return line.get("call_id") == call.call_id and line.get("worker") in workers

    def with_webhook(line: dict[str, Any]) -> bool:
        return line.get("call_id") == call.call_id and bool(line.get("webhook_id"))

    await json_lines.wait_for(with_webhook, timeout=20)  # ingress, acceptor
    await json_lines.wait_for(from_worker, timeout=20)  # the session worker's "call ended"
    for line in json_lines.lines():
        assert {"ts", "level", "logger", "msg"} <= set(line)
    everything = "\n".join(json_lines.text)
    assert API_KEY not in everything
    assert stack.secret not in everything


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("switchboard.test", logging.INFO, __file__, 1, message, args, None)
    record.fields = extra
    return record


def test_text_format_is_readable_and_keeps_the_fields() -> None:
    with bound(call_id="rtc_abc", worker="worker-1"):
        text = TextFormatter().format(_record("call %s", "ended", reason="caller_hangup"))
    assert " INFO  switchboard.test: call ended " in text
    assert text.endswith("call_id=rtc_abc worker=worker-1 reason=caller_hangup")
    assert "\n" not in text


def test_secrets_are_masked_in_both_formats() -> None:
    secrets = ("sk-proj-" + "a" * 40, "whsec_" + "B" * 44, "Bearer control-token-123")
    message = "failed: key=%s secret=%s header=%s"
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(_record(message, *secrets, **fields(detail=secrets[0])["fields"]))
        for secret in secrets:
            assert secret.removeprefix("Bearer ") not in line
        assert "[redacted]" in line
