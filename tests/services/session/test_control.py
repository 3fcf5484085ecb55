"""A call's control subscription on a real nats-server: answered only under the lease, and
once the call is over here, `gone` if it ended or silence if it moved on (its new owner
answers), until the unsubscribe (made with a later write) leaves no responder at all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from services.session.control import CallControl
from shared.control import GONE, ControlCommand, ControlReply, control_subject
from switchboard.nats_server import NatsServer

HANGUP = ControlCommand(action="hangup").model_dump_json().encode()


class Call:
    """The call side of the protocol: what a `Conversation`'s actions answer."""

    def __init__(self) -> None:
        self.owned = True
        self.hangups = 0

    def owns_call(self) -> bool:
        return self.owned

    async def operator_hangup(self) -> ControlReply:
        self.hangups += 1
        return ControlReply(ok=True, status="ended")

    async def operator_transfer(self, target: str) -> ControlReply:
        raise AssertionError("not asked")

    async def operator_say(self, instructions: str) -> ControlReply:
        raise AssertionError("not asked")


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def ask(nc: Client, call_id: str, timeout: float = 2.0) -> ControlReply:
    reply = await nc.request(control_subject(call_id), HANGUP, timeout=timeout)
    return ControlReply.model_validate_json(reply.data)


async def test_an_owned_call_is_served_and_an_ended_one_answers_gone(nc: Client) -> None:
    call = Call()
    control = CallControl(nc, "rtc_c1", call, "w1")
    await control.start()
    assert (await ask(nc, "rtc_c1")).status == "ended"
    control.close(ended=True)
    gone = await ask(nc, "rtc_c1")
    assert (gone.ok, gone.status) == (False, GONE)
    assert call.hangups == 1
    await control.stop()
    with pytest.raises(nats.errors.NoRespondersError):
        await ask(nc, "rtc_c1")


async def test_a_call_that_moved_on_is_left_to_its_new_owner(nc: Client) -> None:
    call = Call()
    control = CallControl(nc, "rtc_c2", call, "w1")
    await control.start()
    control.close(ended=False)  # handed off or lost: another worker answers now
    with pytest.raises(nats.errors.TimeoutError):
        await ask(nc, "rtc_c2", timeout=0.5)
    assert call.hangups == 0
    await control.stop()


async def test_no_lease_no_answer(nc: Client) -> None:
    call = Call()
    call.owned = False
    control = CallControl(nc, "rtc_c3", call, "w1")
    await control.start()
    with pytest.raises(nats.errors.TimeoutError):
        await ask(nc, "rtc_c3", timeout=0.5)
    await control.stop()


async def test_a_control_stopped_before_it_started_never_subscribes(nc: Client) -> None:
    """(The lease request and the subscription go out together: a run that ends before the
    subscription was asked for leaves none behind.)"""
    control = CallControl(nc, "rtc_c4", Call(), "w1")
    await control.stop()
    await control.start()
    with pytest.raises(nats.errors.NoRespondersError):
        await ask(nc, "rtc_c4")
