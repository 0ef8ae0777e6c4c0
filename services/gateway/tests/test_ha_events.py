"""The gateway forwards the HA bus event types the engine's record names, and only those.

Real nats-server and simulator; the engine's record (``engine.event_types`` in the status
bucket) is written by the test as the engine writes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_gateway.ha_events import HaEvents, HaEventsStatus, event_message_id
from ruby_gateway.health import status_record
from ruby_hasim.server import Simulator
from ruby_natsx.publish import MSG_ID, Publisher
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import eventually
from ruby_natsx.topology import EVENT_TYPES_KEY, EVENTS, PROJECTION, STATUS, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.envelope import make_envelope
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.examples import example_envelope
from ruby_schemas.ha import HaEvent
from ruby_schemas.ha_events import EventFiredV1, StateChangedV1
from ruby_schemas.registry import decode, encode
from ruby_schemas.status import GatewayRecord, read_record

StartBridge = Callable[[Simulator], Awaitable[Bridge]]
Stored = tuple[str, EventFiredV1 | StateChangedV1]


@pytest_asyncio.fixture
async def start_bridge(nc: Client, topology_applied: Topology) -> AsyncIterator[StartBridge]:
    running: list[tuple[Bridge, asyncio.Task[None]]] = []

    async def start(sim: Simulator) -> Bridge:
        config = BridgeConfig(
            url=sim.url,
            token=Secret(sim.token, "ha token"),
            ping_interval=0.5,
            ping_timeout=0.5,
            backoff_initial=0.05,
            backoff_max=0.2,
        )
        bridge = Bridge(
            nc, topology_applied.subjects, config, topology_applied.bucket(PROJECTION).bucket
        )
        running.append((bridge, asyncio.create_task(bridge.run())))
        await eventually(lambda: bridge.status.connected, message="bridge connected")
        return bridge

    yield start
    for bridge, task in running:
        bridge.stop()
        await asyncio.wait_for(task, 10)


def record(*event_types: str) -> bytes:
    """The engine's record, as the engine writes it."""
    payload = HaEventTypesV1(event_types=event_types)
    return encode(make_envelope(payload, source="ruby/engine"))


async def want(js: JetStreamContext, topo: Topology, *event_types: str) -> None:
    status = await js.key_value(topo.bucket(STATUS).bucket)
    await status.put(EVENT_TYPES_KEY, record(*event_types))


async def stored(js: JetStreamContext, topo: Topology) -> list[Stored]:
    """Every HA state change and event in EVENTS, in stream order, with its message id."""
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    out: list[Stored] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        data = decode(msg.data or b"").data
        if isinstance(data, EventFiredV1 | StateChangedV1):
            out.append(((msg.headers or {}).get(MSG_ID, ""), data))
    return out


async def events_of(js: JetStreamContext, topo: Topology, event_type: str) -> list[EventFiredV1]:
    return [
        data
        for _, data in await stored(js, topo)
        if isinstance(data, EventFiredV1) and data.event_type == event_type
    ]


async def test_wanted_events_are_forwarded_in_has_order_with_their_own_ids(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    await want(js, topology_applied, "zha_event")  # before the gateway starts: read at start
    bridge = await start_bridge(hasim)
    await eventually(
        lambda: bridge.status.ha_events.subscribed == ("zha_event",), message="subscribed"
    )
    assert hasim.subscribed_types == {"state_changed": 1, "zha_event": 1}
    before = len(await stored(js, topology_applied))

    hasim.fire_event("deconz_event", {"id": "remote"})  # not wanted: HA does not even send it
    first = hasim.fire_event("zha_event", {"device_ieee": "00:11", "command": "on"})
    hasim.set_state("switch.fan", "on" if hasim.states["switch.fan"].state == "off" else "off")
    second = hasim.fire_event("zha_event", {"device_ieee": "00:11", "command": "off"})
    # The first event again, as Home Assistant would send it to a second session: same id.
    hasim.home.fire("zha_event", dict(first.data), first.context, first.time_fired)
    last = hasim.fire_event("zha_event", {"device_ieee": "00:11", "command": "toggle"})

    async def last_stored() -> bool:
        return any(
            e.context_id == last.context.id
            for e in await events_of(js, topology_applied, "zha_event")
        )

    await eventually(last_stored, message="the last event stored")
    new = (await stored(js, topology_applied))[before:]
    kinds = [d.event_type if isinstance(d, EventFiredV1) else d.entity_id for _, d in new]
    assert kinds == ["zha_event", "switch.fan", "zha_event", "zha_event"]  # the copy: deduped
    (first_id, fired), (second_id, _) = new[0], new[2]
    assert isinstance(fired, EventFiredV1)
    assert fired.data == {"device_ieee": "00:11", "command": "on"}
    assert fired.origin == "LOCAL"
    assert fired.context_id == first.context.id
    assert fired.time_fired == first.time_fired
    assert first_id == f"ha.event.zha_event.{first.context.id}.{first.time_fired.isoformat()}"
    assert second_id == f"ha.event.zha_event.{second.context.id}.{second.time_fired.isoformat()}"
    assert await events_of(js, topology_applied, "deconz_event") == []
    await eventually(lambda: bridge.status.ha_events.forwarded == 4, message="acks counted")
    assert bridge.status.ha_events.lost == 0


async def test_the_gateway_follows_the_set_as_the_engine_changes_it(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    bridge = await start_bridge(hasim)  # no record yet: nothing but state changes
    assert hasim.subscribed_types == {"state_changed": 1}
    assert bridge.status.ha_events.wanted == ()

    await want(js, topology_applied, "button_pressed", "remote_used")
    await eventually(
        lambda: (
            hasim.subscribed_types == {"state_changed": 1, "button_pressed": 1, "remote_used": 1}
        ),
        message="both types subscribed",
    )
    await want(js, topology_applied, "remote_used")
    await eventually(
        lambda: bridge.status.ha_events.subscribed == ("remote_used",),
        message="button_pressed unsubscribed",
    )
    assert hasim.subscribed_types == {"state_changed": 1, "remote_used": 1}
    written = status_record(bridge.status).model_dump_json()  # as the gateway writes it
    assert read_record(GatewayRecord, written, key="gateway").ha_events.subscribed == (
        "remote_used",
    )
    hasim.fire_event("button_pressed", {"n": 1})
    barrier = hasim.fire_event("remote_used", {"n": 2})

    async def barrier_stored() -> bool:
        return bool(await events_of(js, topology_applied, "remote_used"))

    await eventually(barrier_stored, message="the later, wanted event stored")
    assert await events_of(js, topology_applied, "button_pressed") == []
    [used] = await events_of(js, topology_applied, "remote_used")
    assert used.context_id == barrier.context.id

    await want(js, topology_applied)  # no rule listens any more
    await eventually(lambda: hasim.subscribed_types == {"state_changed": 1}, message="none left")


async def test_types_that_cannot_be_forwarded_are_logged_and_skipped(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    bridge = await start_bridge(hasim)
    with structlog.testing.capture_logs() as logs:
        await want(js, topology_applied, "ios.action_fired", "state_changed", "knx_event")
        await eventually(lambda: hasim.subscribed_types["knx_event"] == 1, message="subscribed")
    assert bridge.status.ha_events.refused == ("ios.action_fired", "state_changed")
    assert bridge.status.ha_events.wanted == ("knx_event",)
    assert hasim.subscribed_types == {"state_changed": 1, "knx_event": 1}  # its own only
    refused = [e for e in logs if "not forwarded" in e["event"] or "state_changed" in e["event"]]
    assert [e["log_level"] for e in refused] == ["error", "warning"]
    assert "ios.action_fired" in refused[0]["error"]
    hasim.set_state("switch.fan", "on" if hasim.states["switch.fan"].state == "off" else "off")
    hasim.fire_event("knx_event", {})
    await eventually(lambda: bridge.status.ha_events.forwarded == 1, message="knx_event stored")
    assert not [
        d for _, d in await stored(js, topology_applied)
        if isinstance(d, EventFiredV1) and d.event_type != "knx_event"
    ]  # fmt: skip


async def test_after_a_reconnect_every_wanted_type_is_subscribed_again(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    await want(js, topology_applied, "zha_event", "deconz_event")
    bridge = await start_bridge(hasim)
    await eventually(lambda: len(bridge.status.ha_events.subscribed) == 2, message="subscribed")
    await hasim.faults.drop_connections()
    await eventually(
        lambda: (
            bridge.status.reconnects == 1
            and bridge.status.connected
            and bridge.status.ha_events.subscribed == ("deconz_event", "zha_event")
        ),
        message="reconnected and subscribed again",
    )
    assert hasim.subscribed_types == {"state_changed": 1, "zha_event": 1, "deconz_event": 1}
    fired = hasim.fire_event("deconz_event", {"event": 1002})

    async def forwarded() -> bool:
        return [e.context_id for e in await events_of(js, topology_applied, "deconz_event")] == [
            fired.context.id
        ]

    await eventually(forwarded, message="an event after the reconnect stored")


async def test_an_event_jetstream_does_not_store_is_counted_lost_and_logged(
    nc: Client, prefix: str
) -> None:
    subjects = Subjects(prefix)  # no topology applied: no stream takes the event
    publisher = Publisher(nc)
    status = HaEventsStatus()
    events = HaEvents(nc, subjects, publisher, status, service="gateway", window=2)
    events.wanted.apply(record("zha_event"), newest=True)
    raw = {
        "event_type": "zha_event",
        "data": {"command": "on"},
        "origin": "LOCAL",
        "time_fired": "2026-11-20T18:00:00.123456+00:00",
        "context": {"id": "01JD3K2YV9A7Q4M8N2B5C6D7E8", "parent_id": None, "user_id": None},
    }
    try:
        with structlog.testing.capture_logs() as logs:
            for n in range(3):  # more than the window: the oldest is awaited, not raised
                await events.forward({**raw, "data": {"n": n}})
            await events.forward({**raw, "event_type": "not_wanted"})
            await events.forward({"event_type": "zha_event"})  # unreadable
            await eventually(lambda: status.lost == 3, message="three lost")
    finally:
        await publisher.close()
    assert (status.forwarded, status.skipped) == (0, 2)
    lost = [e for e in logs if e["event"] == "home assistant event not stored by JetStream: lost"]
    assert [e["id"] for e in lost] == [event_message_id(HaEvent.model_validate(raw))] * 3


async def test_a_record_read_never_replaces_a_newer_one_received(nc: Client) -> None:
    status = HaEventsStatus()
    events = HaEvents(nc, Subjects("ruby"), Publisher(nc), status, service="gateway", window=1)
    wanted = events.wanted
    old, new = record("old_type"), record("new_type")
    wanted.apply(None, newest=False)  # no record yet
    assert wanted.current == frozenset()
    wanted.apply(new, newest=True)  # a put received
    change = wanted.next_change()
    wanted.apply(old, newest=False)  # a read that raced the put: older, ignored
    wanted.apply(None, newest=False)  # a read before the put was stored: ignored
    assert wanted.current == {"new_type"}
    assert not change.is_set()
    wanted.apply(b"not json", newest=True)  # unreadable: the last good set stays
    wanted.apply(encode(example_envelope("ha.event.v1")), newest=True)  # not the record's type
    assert wanted.current == {"new_type"}
    wanted.apply(None, newest=True)  # the record was deleted
    assert change.is_set()
    assert wanted.current == frozenset()
    assert dataclasses.asdict(status)["wanted"] == ()
