"""A NATS node dies while calls arrive: nothing acknowledged is lost, nothing accepted twice.

Three `nats-server` processes on loopback, every stream and bucket with 3 replicas, the
ingress, the acceptor and a session worker connected to all three nodes (`NATS_URL` lists
them). Calls arrive at a steady rate; part-way through, the node leading the WEBHOOKS
stream (the one every acknowledged webhook was written through) is SIGKILLed: its clients
reconnect to the others, the stream elects a new leader, webhooks meanwhile get 503 and are
retried, and every acknowledged one must still be decided exactly once.

Before the kill the test picks a victim that is not the JetStream meta leader (its step-down
needs the system account). Whatever else the victim leads (other streams, KV buckets,
consumers: placement is the cluster's) elects anew too; an accept in flight while the
stream it writes next elects a leader is finished in place or on redelivery, never sent
twice (see test_acceptor_redelivery.py for the deterministic case).
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from shared.streams import (
    WEBHOOKS_STREAM,
)
from simulator import CallerScript, SimulatedCall
from tests.faults.conftest import (
    NatsCluster,
    count,
    declare_when_ready,
    move_leader_off,
    stream_events,
)
from tests.stack import Stack

CALLS = 45
RATE_PER_S = 15.0
KILL_AFTER = 15  # calls placed before the node dies

SHORT_CALL = CallerScript.model_validate(
    {
        "name": "short",
        "greeting_wait_s": 1.0,
        "steps": [{"say": "Just checking the hours.", "reply": "Nine to five."}, {"hangup": True}],
    }
)


async def place_and_kill(stack: Stack, cluster: NatsCluster, victim: str) -> list[SimulatedCall]:
    """Place CALLS calls at RATE_PER_S, SIGKILL `victim` after KILL_AFTER of them."""
    assert stack.simulator is not None
    loop = asyncio.get_running_loop()
    start = loop.time()
    calls = []
    for index in range(CALLS):
        if index == KILL_AFTER:
            cluster.node(victim).kill()
        delay = start + index / RATE_PER_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival rate of the load, not synchronisation
        calls.append(await stack.simulator.place_call(SHORT_CALL))
    return calls


def delivered(call: SimulatedCall) -> bool:
    return any(status == 200 for _, status, _ in call.webhook_attempts)


def explain(stack: Stack, call: SimulatedCall) -> str:
    """What a call went through, for a failure message."""
    start = min(call.timeline.values())
    timeline = {name: round(at - start, 2) for name, at in call.timeline.items()}
    statuses = [status for _, status, _ in call.webhook_attempts]
    return f"{call!r} webhooks={statuses} events={stack.events.types(call.call_id)} {timeline}"


async def wait_reports(stack: Stack, calls: list[SimulatedCall], timeout: float = 30) -> None:
    """Wait for every call's report; on a timeout, say which calls lack one and why."""
    try:
        await stack.events.wait_all([c.call_id for c in calls], "call.report", timeout=timeout)
    except TimeoutError:
        missing = {
            c.call_id: (
                c.state,
                c.accept_attempts,
                [(e.type, e.data) for e in stack.events.by_call[c.call_id]],
                c.webhook_attempts,
                {k: round(v - min(c.timeline.values()), 2) for k, v in c.timeline.items()},
            )
            for c in calls
            if not stack.events.of_type(c.call_id, "call.report")
        }
        raise AssertionError(f"{len(missing)} calls have no call.report: {missing}") from None


async def test_killing_a_node_loses_no_acknowledged_webhook_and_accepts_once(
    nats_cluster: NatsCluster, cluster_client: Client
) -> None:
    await declare_when_ready(nats_cluster.urls, replicas=3)
    # The victim leads WEBHOOKS but not the meta group (whose step-down needs the system
    # account): move the stream's leader off the meta leader, then take it as the victim.
    meta = nats_cluster.wait_meta_leader()
    await move_leader_off(cluster_client, WEBHOOKS_STREAM, None, meta)
    info = await cluster_client.jetstream().stream_info(WEBHOOKS_STREAM)
    assert info.cluster is not None and info.cluster.leader
    victim = info.cluster.leader
    # The test's own event log listens on a node that survives; services use all three.
    survivor = next(node for node in nats_cluster.nodes if node.name != victim)
    stack = Stack(
        survivor.url,
        capacity=CALLS,  # admission never says "busy": every call must be accepted
        ring_s=30.0,  # the caller rings longer than the accept deadline below
        settings_overrides={
            "nats_url": nats_cluster.nats_url,
            "nats_replicas": 3,
            # Above a JetStream leader election (~5-10 s alone, up to ~13 s seen while the
            # suite's other workers share the two cores), below the ring time: with the
            # default 5 s, webhooks acknowledged just before the kill reach the acceptor after
            # its deadline and the call is dropped as missed (reported as a finding).
            "accept_deadline_s": 25.0,
        },
    )
    await stack.start()
    try:
        assert stack.simulator is not None
        calls = await place_and_kill(stack, nats_cluster, victim)
        try:
            await stack.simulator.wait_all_ended(timeout=45)
        except TimeoutError:
            live = [c for c in calls if c.state in ("ringing", "accepted")]
            raise AssertionError([explain(stack, c) for c in live]) from None
        accepted = [c for c in calls if c.accept_count]
        await wait_reports(stack, accepted)

        # Every webhook was eventually acknowledged: non-200s (503 while the stream elected a
        # new leader) were retried by the simulated OpenAI.
        assert all(delivered(c) for c in calls), [c.webhook_attempts for c in calls]
        # Nothing acknowledged was lost: every call got a decision before it stopped ringing.
        missed = [c for c in calls if c.state == "missed"]
        assert missed == [], [explain(stack, c) for c in missed]
        # Nothing was accepted twice (a repeated accept is counted by the simulator).
        assert max(c.accept_count for c in calls) == 1
        for call in calls:
            events = await stream_events(cluster_client, call.call_id)
            types = [e.type for e in events]
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), types
            if call.accept_count:
                assert call.end_reason == "caller_hangup", (call.call_id, call.state)
                for type in ("call.accepted", "call.ended", "call.report"):
                    assert count(events, type) == 1, (call.call_id, type, types)
            else:  # a decision, recorded: rejected with a reason, never silently dropped
                assert call.state == "rejected", (call.call_id, call.state, types)
                assert count(events, "call.rejected") == 1, (call.call_id, types)
                assert count(events, "call.accepted") == 0, (call.call_id, types)
        # The outage was real: the leader is gone and its webhooks were refused meanwhile.
        assert nats_cluster.node(victim).process is None
        retried = sum(1 for c in calls if len(c.webhook_attempts) > 1)
        print(f"{retried} of {CALLS} webhooks retried, {len(calls) - len(accepted)} rejected")
    finally:
        await stack.stop()
