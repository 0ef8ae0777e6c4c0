"""Home Assistant's start and shutdown, and events fired on its bus, end to end, each service
as its own NATS identity (TLS, NKEY, the real permission table): simulator -> gateway ->
EVENTS -> engine -> COMMANDS -> gateway -> simulator (ADR-0032).

A ``homeassistant: start`` rule fires once per restart of Home Assistant, whether the
gateway saw it start or found it started anew when it reconnected, and never on a restart of
the gateway; a ``shutdown`` rule once per orderly stop. A ``fire_event`` action puts its
event on Home Assistant's bus once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import WSCloseCode
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_ctl.testing import Installation
from ruby_engine.engine import Engine
from ruby_engine.testing import running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.model import Event
from ruby_hasim.server import Simulator
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import ENGINE, EVENTS, GATEWAY, Topology
from ruby_runtime.secret import Secret

RULES = """
rules:
  - id: lights_when_ha_starts
    description: the hallway light goes on whenever Home Assistant has started
    triggers:
      - {kind: homeassistant, event: start}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.hallway}}
  - id: tell_when_ha_stops
    description: others hear that Home Assistant stops
    triggers:
      - {kind: homeassistant, event: shutdown}
    actions:
      - {kind: publish, event_type: ha_stopping}
  - id: doorbell_on_the_bus
    description: the doorbell rings on Home Assistant's bus
    triggers:
      - {kind: state, entity_id: binary_sensor.doorbell, to: "on"}
    actions:
      - kind: fire_event
        event_type: doorbell.rang
        data: {where: front, by: "{{ trigger.entity_id }}"}
"""


@pytest.fixture
def bus(hasim: Simulator) -> Iterator[list[Event]]:
    """Every event fired on the simulator's bus but state changes."""
    seen: list[Event] = []
    stop = hasim.home.listen(
        lambda event: seen.append(event) if event.event_type != "state_changed" else None
    )
    yield seen
    stop()


@pytest_asyncio.fixture
async def operator(secure_installation: Installation) -> AsyncIterator[Client]:
    nc = await secure_installation.connect("operator")
    yield nc
    await nc.drain()


@pytest_asyncio.fixture
async def engine(secure_installation: Installation, tmp_path: Path) -> AsyncIterator[Engine]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "lifecycle.yaml").write_text(RULES)
    nc = await secure_installation.connect("engine")
    try:
        async with running_engine(nc, secure_installation.subjects, rules) as running:
            yield running
    finally:
        await nc.drain()


def gateway(installation: Installation, hasim: Simulator) -> AbstractAsyncContextManager[Gateway]:
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"),
                          backoff_initial=0.05, backoff_max=0.2)  # fmt: skip
    return running_secure_gateway(installation, config, backoff=(0.1,) * 4)


async def lifecycle_counts(js: JetStreamContext, topo: Topology) -> dict[str, int]:
    """How many start and shutdown announcements EVENTS holds."""
    info = await js.stream_info(topo.stream(EVENTS).name, subjects_filter=topo.subjects.ha_all)
    counts = info.state.subjects or {}
    return {
        event: counts.get(topo.subjects.ha_lifecycle(event), 0) for event in ("start", "shutdown")
    }


async def rule_events(js: JetStreamContext, topo: Topology, what: str) -> int:
    info = await js.stream_info(
        topo.stream(EVENTS).name, subjects_filter=topo.subjects.rule("tell_when_ha_stops", what)
    )
    return sum((info.state.subjects or {}).values())


async def test_start_and_shutdown_rules_fire_once_per_restart_of_home_assistant_only(
    secure_installation: Installation,
    hasim: Simulator,
    engine: Engine,
    operator: Client,
) -> None:
    inst, js = secure_installation, operator.jetstream()
    topo = inst.topology
    hasim.set_state("light.hallway", "off")

    async def settled() -> bool:
        return await consumers_idle(js, topo, ENGINE, GATEWAY)

    async with gateway(inst, hasim) as gw:  # the first run it ever sees: recorded, not a start
        await eventually(lambda: gw.bridge.lifecycle.run is not None, message="run recorded")
        first_run = gw.bridge.lifecycle.run
    async with gateway(inst, hasim) as gw:  # a restart of the gateway alone: the same run
        await eventually(
            lambda: (run := gw.bridge.lifecycle.run) is not None and run.seen > first_run.seen,  # type: ignore[union-attr]  # recorded above
            message="the run found again",
        )
        assert gw.bridge.lifecycle.run.boot == first_run.boot  # type: ignore[union-attr]  # as above
        await eventually(settled, message="idle")
        assert await lifecycle_counts(js, topo) == {"start": 0, "shutdown": 0}
        assert hasim.calls[("light", "turn_on", "light.hallway")] == 0

        # Home Assistant restarts, too fast to be seen starting: found on reconnect.
        await hasim.shut_down()
        await hasim.boot()
        await eventually(lambda: hasim.states["light.hallway"].state == "on", message="lit")
        await eventually(settled, message="idle")
        assert await lifecycle_counts(js, topo) == {"start": 1, "shutdown": 1}
        assert [(a.event, a.seen) for a in gw.bridge.lifecycle.announced] == [
            ("shutdown", "live"),
            ("start", "reconnect"),
        ]
        assert await rule_events(js, topo, "ha_stopping") == 1

        # Again, and this time the gateway is connected while it starts: seen live.
        hasim.set_state("light.hallway", "off")
        await hasim.shut_down()
        await hasim.boot(start=False)
        await eventually(
            lambda: hasim.subscribed_types.get("homeassistant_started") == 1,
            message="the gateway waits for the start",
        )
        hasim.finish_start()
        await eventually(lambda: hasim.states["light.hallway"].state == "on", message="lit")
        await eventually(settled, message="idle")
        assert await lifecycle_counts(js, topo) == {"start": 2, "shutdown": 2}
        assert gw.bridge.lifecycle.announced[-1].seen == "live"

    async with gateway(inst, hasim) as gw:  # the gateway restarts: nothing is announced
        await eventually(
            lambda: (run := gw.bridge.lifecycle.run) is not None and run.seen > first_run.seen,  # type: ignore[union-attr]  # recorded above
            message="the run found again",
        )
        await eventually(settled, message="idle")
        assert gw.bridge.lifecycle.announced == []
    assert await lifecycle_counts(js, topo) == {"start": 2, "shutdown": 2}
    assert hasim.calls[("light", "turn_on", "light.hallway")] == 2
    assert await rule_events(js, topo, "ha_stopping") == 2


async def test_a_dropped_connection_is_no_shutdown_and_a_rule_fires_an_event_on_the_bus(
    secure_installation: Installation,
    hasim: Simulator,
    engine: Engine,
    operator: Client,
    bus: list[Event],
) -> None:
    inst, js = secure_installation, operator.jetstream()
    topo = inst.topology
    hasim.set_state("binary_sensor.doorbell", "off")
    async with gateway(inst, hasim) as gw:
        await eventually(lambda: gw.bridge.lifecycle.run is not None, message="run recorded")
        await hasim.faults.drop_connections(abrupt=True)  # a network failure
        await eventually(lambda: gw.bridge.status.sessions == 2, message="reconnected")
        await hasim.faults.drop_connections(abrupt=False)  # a close frame, not a shutdown's
        await eventually(lambda: gw.bridge.status.sessions == 3, message="reconnected")
        # A normal close, as at a shutdown, but Home Assistant goes on (it gave up on a slow
        # client): the same run answers again, so no shutdown.
        known = gw.bridge.lifecycle.run
        assert known is not None
        await hasim.faults.drop_connections(abrupt=False, code=WSCloseCode.OK)
        await eventually(
            lambda: (run := gw.bridge.lifecycle.run) is not None and run.seen > known.seen,
            message="the same run found again by the next session",
        )
        assert gw.bridge.status.sessions == 4

        hasim.set_state("binary_sensor.doorbell", "on")
        await eventually(lambda: any(e.event_type == "doorbell.rang" for e in bus), message="rang")
        await eventually(lambda: consumers_idle(js, topo, ENGINE, GATEWAY), message="idle")
        [rang] = [e for e in bus if e.event_type == "doorbell.rang"]
        assert rang.data == {"where": "front", "by": "binary_sensor.doorbell"}
        assert rang.context.user_id == hasim.user_id  # fired by the gateway's user
        assert gw.bridge.lifecycle.announced == []
    assert await lifecycle_counts(js, topo) == {"start": 0, "shutdown": 0}
