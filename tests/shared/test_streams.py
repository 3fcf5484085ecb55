"""Every service declares the topology at start-up: doing it again changes nothing."""

from __future__ import annotations

from pathlib import Path

import nats

from shared.events import CALL_EVENTS_STREAM
from shared.settings import Settings
from shared.streams import (
    CALL_LEASES_BUCKET,
    SESSION_CONSUMER,
    SESSIONS_STREAM,
    WEBHOOKS_STREAM,
    declare_configured_topology,
    declare_topology,
)
from switchboard.nats_server import NatsServer


async def test_declaring_twice_is_harmless_and_keeps_messages(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await declare_topology(js)
    await js.publish("webhooks.realtime.call.incoming", b"{}", stream=WEBHOOKS_STREAM)

    await declare_topology(js, session_ack_wait_s=9.0)

    assert (await js.stream_info(WEBHOOKS_STREAM)).state.messages == 1
    consumer = await js.consumer_info(SESSIONS_STREAM, SESSION_CONSUMER)
    assert consumer.config.ack_wait == 9.0
    await js.key_value(CALL_LEASES_BUCKET)
    await nc.close()


async def test_every_service_declares_the_topology_its_settings_configure(
    nats_server: NatsServer,
) -> None:
    """A service declaring with defaults would, at its start, undo the retention and ack
    wait the others were configured with (the dialler once did)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        nats_url=nats_server.url,
        switchboard_events_retention_s=3600.0,
        session_ack_wait_s=9.0,
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await declare_configured_topology(js, settings)
    assert (await js.stream_info(CALL_EVENTS_STREAM)).config.max_age == 3600.0
    assert (await js.consumer_info(SESSIONS_STREAM, SESSION_CONSUMER)).config.ack_wait == 9.0
    await nc.close()

    services = Path(__file__).parents[2] / "services"
    direct = [
        str(path.relative_to(services))
        for path in services.rglob("*.py")
        if "declare_topology(" in path.read_text()
    ]
    assert direct == [], "declare with declare_configured_topology(js, settings)"
