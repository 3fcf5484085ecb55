"""The console's bodies and ids follow the ingress's rules (issue 22, items 4 and 5): bodies
capped while read, JSON depth-limited, one `call_id` rule; a 4xx, never a 500."""

from __future__ import annotations

import httpx

from services.ingress.main import Ingress
from tests.services.ingress.console.conftest import CONTROL_TOKEN
from tests.services.ingress.console.test_routes import console, http, sign_in

__all__ = ["console", "http"]  # the fixtures, shared with test_routes


async def test_a_sign_in_nested_deep_is_a_wrong_token_not_a_500(http: httpx.AsyncClient) -> None:
    deep = b"[" * 2000 + b"]" * 2000  # within the 4 KiB cap; the stdlib parser recursed
    assert (await http.post("/console/api/signin", content=deep)).status_code == 401


async def test_a_sign_in_body_over_the_cap_is_refused_while_read(
    http: httpx.AsyncClient,
) -> None:
    async def chunks():  # chunked: no length to refuse up front
        for _ in range(1024):
            yield b"x" * 1024

    reply = await http.post("/console/api/signin", content=chunks())
    assert reply.status_code == 413


async def test_actions_on_ids_outside_the_rule_are_404(
    http: httpx.AsyncClient, console: Ingress
) -> None:
    csrf = await sign_in(http, CONTROL_TOKEN)
    for call_id in ("rtc_é", "rtc_٣", "²³"):
        reply = await http.post(
            f"/console/api/calls/{call_id}/say",
            headers={"x-csrf-token": csrf},
            json={"instructions": "hello"},
        )
        assert reply.status_code == 404, reply.text
        stream = await http.get(f"/console/api/calls/{call_id}/stream")
        assert stream.status_code == 404
