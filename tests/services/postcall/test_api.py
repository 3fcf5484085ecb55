"""The webhooks API on the ingress: subscriptions, secrets shown once, SSRF refusals,
rotation with two signatures, replays with the same ids."""

from __future__ import annotations

import httpx
import pytest

from services.ingress.main import Ingress
from tests.services.postcall.conftest import (
    Receiver,
)


async def test_routes_need_the_token(ingress: Ingress) -> None:
    base = f"http://127.0.0.1:{ingress.http.port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for method, path in (("GET", "/webhooks"), ("POST", "/webhooks"),
                             ("DELETE", "/webhooks/ep_1"), ("POST", "/webhooks/ep_1/replay"),
                             ("GET", "/calls?since="), ("GET", "/calls/rtc_1/events")):  # fmt: skip
            answer = await client.request(
                method, path, json={"url": "https://example.com"},
                headers={"Authorization": "Bearer wrong"},
            )  # fmt: skip
            assert answer.status_code == 401, path
        listed = await client.get("/webhooks", headers={"Authorization": "Bearer wrong"})
        assert "webhooks" not in listed.text


async def test_create_list_delete(api: httpx.AsyncClient, receiver: Receiver) -> None:
    created = await api.post("/webhooks", json={"url": receiver.url, "agents": ["salon"]})
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["call.report"]
    mine = "whsec_" + "B" * 43 + "="
    given = await api.post("/webhooks", json={"url": receiver.url, "events": ["*"], "secret": mine})
    assert given.json()["secret"] == mine

    listed = (await api.get("/webhooks")).json()["webhooks"]
    assert {e["id"] for e in listed} == {body["id"], given.json()["id"]}
    assert "whsec_" not in str(listed)  # secrets are shown once, never listed
    assert "whsec_" not in (await api.get(f"/webhooks/{body['id']}")).text

    assert (await api.delete(f"/webhooks/{body['id']}")).status_code == 200
    assert (await api.get(f"/webhooks/{body['id']}")).status_code == 404
    assert (await api.delete(f"/webhooks/{body['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://example.com", "events": ["Call Report!"]}, "events"),
        ({"url": "https://example.com", "secret": "not-a-secret"}, "secret"),
        ({"url": "https://example.com", "colour": "blue"}, "colour"),
        ({"events": ["call.report"]}, "url"),
    ],
)
async def test_a_bad_subscription_is_refused_with_the_reason(
    api: httpx.AsyncClient, body: dict, field: str
) -> None:
    answer = await api.post("/webhooks", json=body)
    assert answer.status_code == 422
    assert answer.json()["details"][0]["field"] == field
    assert "not-a-secret" not in answer.text
    assert (await api.get("/webhooks")).json()["webhooks"] == []
