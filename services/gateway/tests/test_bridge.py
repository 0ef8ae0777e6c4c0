"""The gateway's HA -> JetStream bridge against the simulator and a real nats-server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_gateway.bridge import Bridge, BridgeConfig, _Pending
from ruby_gateway.projection import Projected, load_projection
from ruby_hasim.home import generate_home
from ruby_hasim.server import Simulator
from ruby_natsx.apply import apply_topology
from ruby_natsx.connection import NatsSettings, connect
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import ServerFactory, eventually, jetstream_ready
from ruby_natsx.topology import AUDIT, EVENTS, PROJECTION, Topology, topology
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.ha import HaState
from ruby_schemas.ha_events import StateChangedV1
from ruby_schemas.registry import decode

StartBridge = Callable[..., Awaitable[Bridge]]


@pytest_asyncio.fixture
async def start_bridge(nc: Client, topology_applied: Topology) -> AsyncIterator[StartBridge]:
    running: list[tuple[Bridge, asyncio.Task[None]]] = []

    async def start(sim: Simulator, **overrides: object) -> Bridge:
        config = BridgeConfig(
            url=sim.url,
            token=Secret(sim.token, "ha token"),
            ping_interval=0.5,
            ping_timeout=0.5,
            backoff_initial=0.05,
            backoff_max=0.2,
            auth_backoff=0.3,
        )
        config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
        bridge = Bridge(
            nc, topology_applied.subjects, config, topology_applied.bucket(PROJECTION).bucket
        )
        running.append((bridge, asyncio.create_task(bridge.run())))
        return bridge

    yield start
    for bridge, task in running:
        bridge.stop()
        await asyncio.wait_for(task, 10)


async def published(js: JetStreamContext, topo: Topology) -> list[StateChangedV1]:
    """Every state change stored in EVENTS, in stream order."""
    return [change for _, change in await stored_changes(js, topo)]


async def stored_changes(
    js: JetStreamContext, topo: Topology
) -> list[tuple[datetime, StateChangedV1]]:
    """Every state change stored in EVENTS, in stream order, with its envelope's time."""
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        envelope = decode((await js.get_msg(stream, seq)).data or b"")
        if isinstance(envelope.data, StateChangedV1):
            out.append((envelope.time, envelope.data))
    return out


def settled(bridge: Bridge, sim: Simulator) -> Callable[[], bool]:
    def check() -> bool:
        projection = bridge.projection.snapshot()
        return (
            bridge.status.connected
            and set(projection) == set(sim.states)
            and all(
                projection[e].last_updated == s.last_updated and projection[e].state == s.state
                for e, s in ((e, Projected.of(sim_state(sim, e))) for e in projection)
            )
        )

    return check


def sim_state(sim: Simulator, entity_id: str) -> HaState:
    return HaState.model_validate(sim.states[entity_id].as_dict())


async def test_connects_projects_every_entity_and_publishes_live_changes(
    hasim: Simulator,
    start_bridge: StartBridge,
    nc: Client,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    bridge = await start_bridge(hasim)
    await eventually(settled(bridge, hasim), message="projection equals HA")
    first = await published(js, topology_applied)
    assert {c.entity_id for c in first} == set(hasim.states)
    assert all(c.reconciled for c in first)  # a new projection is filled by reconciliation

    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "on" if hasim.states[light].state == "off" else "off")
    await eventually(lambda: bridge.status.events_published == len(first) + 1)
    live = (await published(js, topology_applied))[-1]
    assert live.entity_id == light
    assert not live.reconciled
    assert live.new_state is not None
    assert live.new_state.state == hasim.states[light].state

    stored = await load_projection(nc, topology_applied.bucket(PROJECTION).bucket)
    assert stored.get(light) == bridge.projection.get(light)


async def test_after_a_disconnect_during_which_1000_entities_change_each_change_is_published_once(
    hasim_factory: Callable[..., Awaitable[Simulator]],
    start_bridge: StartBridge,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    sim = await hasim_factory(generate_home(1000))
    bridge = await start_bridge(sim)
    await eventually(settled(bridge, sim), message="initial projection")
    before = len(await published(js, topology_applied))
    assert before == 1000

    await sim.faults.go_down()
    await eventually(lambda: not bridge.status.connected, message="disconnect noticed")
    changed = list(sim.states)
    for entity in changed:  # every entity changes while the gateway is away
        state = sim.states[entity]
        sim.set_state(entity, None, {"note": f"changed-{state.last_updated}"})
    await sim.faults.go_up()
    await eventually(settled(bridge, sim), within=60, message="reconciled projection")

    # Live changes after the reconnect are published live, once.
    sim.set_state(changed[0], None, {"note": "live"})
    await eventually(settled(bridge, sim))
    changes = (await published(js, topology_applied))[before:]
    per_entity = Counter(c.entity_id for c in changes)
    assert per_entity[changed[0]] == 2  # reconciled, then live
    assert all(per_entity[e] == 1 for e in changed[1:])
    assert sum(c.reconciled for c in changes) == 1000
    assert bridge.status.reconnects >= 1


async def test_changes_buffered_during_reconciliation_are_not_published_twice(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    bridge = await start_bridge(hasim)
    await eventually(settled(bridge, hasim))
    before = len(await published(js, topology_applied))
    await hasim.faults.drop_connections()
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, None, {"note": "while away"})
    await eventually(lambda: bridge.status.sessions >= 2)
    await eventually(settled(bridge, hasim))
    changes = (await published(js, topology_applied))[before:]
    assert [c.entity_id for c in changes] == [light]


async def test_auth_invalid_is_reported_audited_and_never_hot_loops(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    hasim.faults.refuse_auth()
    bridge = await start_bridge(hasim, auth_backoff=0.5)
    await eventually(lambda: bridge.status.auth_failures >= 2, within=5)
    await asyncio.sleep(1.0)  # a window to count attempts in: time is the measure here
    assert hasim.stats.auth_attempts <= 4  # at most one per auth_backoff, no hot loop
    audit = await js.get_last_msg(
        topology_applied.stream(AUDIT).name,
        topology_applied.subjects.audit("gateway", "auth_refused"),
    )
    record = decode(audit.data or b"").data
    assert isinstance(record, AuditRecordV1)
    assert record.outcome == "denied"
    info = await js.stream_info(topology_applied.stream(AUDIT).name)
    assert info.state.messages == 1  # audited once per streak, not per attempt

    hasim.faults.refuse_auth(False)
    await eventually(settled(bridge, hasim), within=5)


async def test_a_missed_pong_means_reconnect(hasim: Simulator, start_bridge: StartBridge) -> None:
    bridge = await start_bridge(hasim, ping_interval=0.2, ping_timeout=0.2)
    await eventually(settled(bridge, hasim))
    hasim.faults.mute_pings()
    await eventually(lambda: bridge.status.reconnects >= 1, message="reconnect after no pong")
    hasim.faults.mute_pings(False)
    await eventually(lambda: bridge.status.connected)


async def test_slow_responses_and_a_burst_are_handled_in_order(
    hasim: Simulator, start_bridge: StartBridge, js: JetStreamContext, topology_applied: Topology
) -> None:
    hasim.faults.delay_responses(0.2)
    bridge = await start_bridge(hasim)
    await eventually(settled(bridge, hasim))
    hasim.faults.delay_responses(0)
    before = len(await published(js, topology_applied))
    n = await hasim.faults.burst(500)
    await eventually(lambda: bridge.status.events_published == before + n, within=30)
    await eventually(settled(bridge, hasim))
    burst = (await published(js, topology_applied))[before:]
    assert len(burst) == n
    for entity in {c.entity_id for c in burst}:
        times = [c.new_state.last_updated for c in burst if c.entity_id == entity and c.new_state]
        assert times == sorted(times), f"{entity} out of order"


async def test_a_restarted_gateway_loads_its_projection_and_publishes_only_what_changed(
    hasim_factory: Callable[..., Awaitable[Simulator]],
    start_bridge: StartBridge,
    nc: Client,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    sim = await hasim_factory(generate_home(2500))  # more than one page of the loader
    first = await start_bridge(sim)
    await eventually(settled(first, sim), within=60)
    first.stop()
    await eventually(lambda: not first.status.connected)
    before = len(await published(js, topology_applied))
    light = next(e for e in sim.states if e.startswith("light."))
    sim.set_state(light, None, {"note": "while the gateway was stopped"})

    bucket = topology_applied.bucket(PROJECTION).bucket
    await nc.publish(f"$KV.{bucket}.{light}", b"not json")  # a corrupted entry
    await nc.flush()
    loaded = await load_projection(nc, bucket)
    assert len(loaded) == 2499  # the corrupted one is skipped, so it is reconciled afresh
    assert loaded.get(light) is None
    config = dataclasses.replace(first.config)
    second = Bridge(nc, topology_applied.subjects, config, bucket, loaded)
    task = asyncio.create_task(second.run())
    try:
        await eventually(settled(second, sim), within=60)
        changes = (await published(js, topology_applied))[before:]
        assert [c.entity_id for c in changes] == [light]
        assert changes[0].reconciled
    finally:
        second.stop()
        await asyncio.wait_for(task, 10)


async def test_a_flood_beyond_the_backlog_bound_reconnects_and_loses_no_final_state(
    hasim_factory: Callable[..., Awaitable[Simulator]],
    start_bridge: StartBridge,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    sim = await hasim_factory(generate_home(200))
    bridge = await start_bridge(sim, max_backlog=20, window=8)
    await eventually(settled(bridge, sim))
    await sim.faults.burst(5000)  # far faster than 8 unacknowledged publishes can drain
    await eventually(lambda: bridge.status.backlog_overflows >= 1, message="the bound held")
    await eventually(settled(bridge, sim), within=60, message="reconciled after the flood")
    last: dict[str, StateChangedV1] = {}
    for change in await published(js, topology_applied):
        last[change.entity_id] = change
    for entity, state in sim.states.items():  # every entity's final state was published
        final = last[entity].new_state
        assert final is not None
        assert final.state == state.state
        assert final.last_updated == sim_state(sim, entity).last_updated


async def test_a_change_received_while_nats_is_away_is_stamped_when_it_was_received(
    hasim: Simulator, nats_server_factory: ServerFactory, prefix: str
) -> None:
    # The engine tells a backlog by the envelope's time (ADR-0031): a change Home Assistant
    # sent while nats-server was away must carry the time it was received, not the time the
    # gateway got around to publishing it once NATS was back.
    server = nats_server_factory()
    nc = await connect(NatsSettings(url=server.url, name="gateway", reconnect_wait=0.1))
    js = nc.jetstream()
    topo = topology(Subjects(prefix))
    await apply_topology(js, topo)
    seen: dict[str, datetime] = {}
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "t"))
    bridge = Bridge(nc, topo.subjects, config, topo.bucket(PROJECTION).bucket,
                    on_change=seen.__setitem__)  # fmt: skip
    task = asyncio.create_task(bridge.run())
    try:
        await eventually(settled(bridge, hasim), message="projection equals HA")
        light = next(e for e in hasim.states if e.startswith("light."))
        server.stop()
        first = hasim.set_state(light, "on" if hasim.states[light].state == "off" else "off")
        # Seen and handed to JetStream: the gateway now waits for its ack at the lull.
        await eventually(lambda: seen.get(light) == first.last_changed, message="first seen")
        for _ in range(3):
            hasim.set_state(light, "on" if hasim.states[light].state == "off" else "off")
        last = hasim.states[light]
        await eventually(lambda: seen.get(light) == last.last_changed, message="HA's changes seen")
        back = datetime.now(UTC)
        server.start()
        await eventually(lambda: jetstream_ready(js), message="JetStream back")

        async def stored() -> bool:
            return any(
                c.new_state is not None and c.new_state.last_updated == last.last_updated
                for _, c in await stored_changes(js, topo)
            )

        await eventually(stored, within=30, message="the last change stored")
        live = [
            sent
            for sent, change in await stored_changes(js, topo)
            if change.entity_id == light and not change.reconciled
        ]
        assert len(live) >= 2, live
        assert all(sent < back for sent in live[-4:]), (live[-4:], back)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await nc.close()


async def test_two_settlers_never_project_an_older_change_last(
    nc: Client, topology_applied: Topology
) -> None:
    # _live and the heartbeat both settle published changes. Seen under load: each popped one
    # change of the same entity, the newer one's ack came first, and the projection (and its
    # KV entry) ended on the older one for good.
    topo = topology_applied
    bridge = Bridge(nc, topo.subjects, BridgeConfig(url="ws://127.0.0.1:9", token=Secret("t", "t")),
                    topo.bucket(PROJECTION).bucket)  # fmt: skip
    at = datetime.now(UTC)
    older = Projected("on", {}, at, at, "c1")
    newer = Projected("off", {}, at + timedelta(seconds=1), at + timedelta(seconds=1), "c2")
    loop = asyncio.get_running_loop()
    first_ack, second_ack = loop.create_future(), loop.create_future()
    bridge._pending.extend([_Pending("light.x", older, first_ack),
                            _Pending("light.x", newer, second_ack)])  # fmt: skip
    settlers = [asyncio.create_task(bridge._settle_all()) for _ in range(2)]
    await asyncio.sleep(0)  # both settlers are waiting now
    second_ack.set_result(2)  # JetStream answers the newer publish first
    await asyncio.sleep(0)
    first_ack.set_result(1)
    await asyncio.gather(*settlers)
    assert bridge.projection.get("light.x") == newer
    assert bridge.status.events_published == 2
