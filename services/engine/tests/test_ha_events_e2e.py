"""A rule on a Home Assistant bus event, end to end, each service as its own NATS identity:
simulator -> gateway -> EVENTS -> engine -> COMMANDS -> gateway -> simulator.

The gateway subscribes on Home Assistant to what the engine's rules need, and stops when the
rule goes: the event types travel through the engine's status record, under the real
permissions (TLS, NKEY), not through test code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest_asyncio
from nats.js import JetStreamContext

from ruby_ctl.testing import Installation
from ruby_engine.testing import running_engine
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.model import JsonObject
from ruby_hasim.server import Simulator
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import ENGINE, EVENTS, GATEWAY, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.ha_events import EventFiredV1
from ruby_schemas.registry import decode

BUTTON = """
rules:
  - id: button_turns_fan_on
    description: the hall button's "on" turns the fan on
    triggers:
      - kind: event
        event_type: zha_event
        event_data: {device_ieee: "00:11:22:33", command: "on"}
    actions:
      - {kind: call, service: switch.turn_on, target: {entity_id: switch.fan}}
"""
DOORBELL = """
rules:
  - id: doorbell_lights_the_hall
    description: the doorbell turns the hallway light on
    triggers:
      - {kind: event, event_type: doorbell}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.hallway}}
"""
HALL_BUTTON: JsonObject = {"device_ieee": "00:11:22:33", "command": "on", "args": []}


@pytest_asyncio.fixture
async def gateway(secure_installation: Installation, hasim: Simulator) -> AsyncIterator[Gateway]:
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    async with running_secure_gateway(secure_installation, config, backoff=(0.1,) * 4) as gw:
        yield gw


async def zha_events(js: JetStreamContext, topo: Topology) -> list[EventFiredV1]:
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        data = decode((await js.get_msg(stream, seq)).data or b"").data
        if isinstance(data, EventFiredV1) and data.event_type == "zha_event":
            out.append(data)
    return out


async def test_a_rule_on_a_bus_event_fires_and_its_type_is_dropped_with_the_rule(
    secure_installation: Installation, gateway: Gateway, hasim: Simulator, tmp_path: Path
) -> None:
    installation = secure_installation
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "button.yaml").write_text(BUTTON)
    (rules / "doorbell.yaml").write_text(DOORBELL)
    operator = await installation.connect("operator")
    engine_nc = await installation.connect("engine")
    js = operator.jetstream()
    topo = installation.topology

    def settled() -> Awaitable[bool]:
        return consumers_idle(js, topo, ENGINE, GATEWAY)

    try:
        async with running_engine(engine_nc, installation.subjects, rules):
            await eventually(
                lambda: (
                    hasim.subscribed_types == {"state_changed": 1, "zha_event": 1, "doorbell": 1}
                ),
                message="the gateway subscribed to what the rules need",
            )
            hasim.set_state("switch.fan", "off")
            hasim.set_state("light.hallway", "off")
            await eventually(settled, message="the engine and the gateway idle")

            # Data that does not match, then data that does: one call.
            hasim.fire_event("zha_event", {**HALL_BUTTON, "command": "off"})
            hasim.fire_event("zha_event", HALL_BUTTON)
            await eventually(lambda: hasim.states["switch.fan"].state == "on", message="fan on")
            await eventually(settled, message="the engine and the gateway idle")
            assert hasim.calls[("switch", "turn_on", "switch.fan")] == 1
            assert len(await zha_events(js, topo)) == 2

            # The rule goes: the gateway unsubscribes, and the button no longer reaches EVENTS.
            (rules / "button.yaml").unlink()
            await eventually(
                lambda: hasim.subscribed_types == {"state_changed": 1, "doorbell": 1},
                message="zha_event no longer subscribed",
            )
            assert gateway.bridge.status.ha_events.wanted == ("doorbell",)
            hasim.set_state("switch.fan", "off")
            hasim.fire_event("zha_event", HALL_BUTTON)
            hasim.fire_event("doorbell", {})  # after it, in the same pipeline: a barrier
            await eventually(lambda: hasim.states["light.hallway"].state == "on", message="lit")
            await eventually(settled, message="the engine and the gateway idle")
            assert len(await zha_events(js, topo)) == 2
            assert hasim.states["switch.fan"].state == "off"
            assert hasim.calls[("switch", "turn_on", "switch.fan")] == 1
    finally:
        await engine_nc.drain()
        await operator.drain()
