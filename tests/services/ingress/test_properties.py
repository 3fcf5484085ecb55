"""Property tests: arbitrary headers and bodies at the real app, with a real nats-server.

The app is driven in process through ASGI (no sockets, for speed); NATS is real, so
"nothing published" is checked on the streams themselves.
"""

from __future__ import annotations

import json
import string
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from services.ingress.app import WEBHOOK_PATH
from services.ingress.main import Ingress
from tests.services.ingress.conftest import Signer, event_messages, webhook_messages

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TOKEN = string.ascii_letters + string.digits + "-_"
header_names = st.one_of(
    st.sampled_from(
        ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "Webhook-ID"]
    ),
    st.text(TOKEN, min_size=1, max_size=20),
)
header_values = st.one_of(
    st.text(string.printable.strip() + " ", max_size=80),
    st.integers().map(str),
    st.builds(lambda sig: "v1," + sig, st.text(string.ascii_letters + "+/=", max_size=60)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
sip_header = st.one_of(
    st.fixed_dictionaries({"name": st.text(max_size=40), "value": st.text(max_size=200)}),
    json_values,
)
incoming_calls = st.fixed_dictionaries(
    {
        "type": st.just("realtime.call.incoming"),
        "data": st.fixed_dictionaries(
            {
                "call_id": st.one_of(
                    st.text(TOKEN, min_size=1, max_size=40), st.text(max_size=10), json_values
                ),
                "sip_headers": st.one_of(st.lists(sip_header, max_size=6), json_values),
            }
        ),
    }
)
events = st.one_of(
    incoming_calls,
    st.fixed_dictionaries({"type": st.text(max_size=30), "data": json_values}),
    json_values,
)
bodies = st.one_of(st.binary(max_size=512), events.map(lambda e: json.dumps(e).encode()))


def utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture
async def asgi(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ingress.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield client


@PROPERTY
@given(headers=st.dictionaries(header_names, header_values, max_size=6), body=bodies)
async def test_without_a_valid_signature_nothing_is_published_and_no_5xx(
    asgi: httpx.AsyncClient, js: JetStreamContext, headers: dict[str, str], body: bytes
) -> None:
    reply = await asgi.post(WEBHOOK_PATH, content=body, headers=headers)

    assert reply.status_code == 401
    assert set(reply.json()) == {"error"}
    assert await webhook_messages(js) == 0
    assert await event_messages(js) == 0


@PROPERTY
@given(body=bodies, extra=st.dictionaries(header_names, header_values, max_size=3))
async def test_signed_arbitrary_bodies_are_200_or_400_and_only_200s_publish(
    asgi: httpx.AsyncClient,
    js: JetStreamContext,
    signer: Signer,
    body: bytes,
    extra: dict[str, str],
) -> None:
    before = await webhook_messages(js)
    headers = {**{k.lower(): v for k, v in extra.items()}, **signer.headers(body)}

    reply = await asgi.post(WEBHOOK_PATH, content=body, headers=headers)

    # The SDK verifies text: a body that is not UTF-8 cannot carry a valid signature.
    assert reply.status_code in ((200, 400) if utf8(body) else (401,))
    published = reply.status_code == 200 and reply.json() == {"status": "published"}
    assert await webhook_messages(js) == before + published


@PROPERTY
@given(body=bodies, flip=st.integers(min_value=0))
async def test_any_change_to_a_signed_body_is_refused(
    asgi: httpx.AsyncClient, js: JetStreamContext, signer: Signer, body: bytes, flip: int
) -> None:
    headers = signer.headers(body)
    tampered = bytearray(body or b" ")
    tampered[flip % len(tampered)] ^= 0x01

    reply = await asgi.post(WEBHOOK_PATH, content=bytes(tampered), headers=headers)

    assert reply.status_code == 401
    assert await webhook_messages(js) == 0
