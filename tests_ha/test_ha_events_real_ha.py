"""Home Assistant bus events reach the rules, with a REAL Home Assistant.

The gateway runs in-process as the installation's gateway identity, the engine as its own
process (``ruby-engine``, TLS + NKEY); the test fires custom events through Home Assistant's
own WebSocket ``fire_event`` and watches what HA executes. Entity: ``input_boolean.lamp_power``
(``a`` and ``b`` belong to HA's own automations; ``motion`` to the drift test, whose shapes
would show who changed it last). Also: the simulator's ``fire_event`` answers in Home
Assistant's shapes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest_asyncio
from nats.js import JetStreamContext

from ruby_ctl.testing import Installation
from ruby_engine.testing import engine_process, engine_ready
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import ENGINE, EVENTS, GATEWAY, STATUS, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.ha_events import EventFiredV1
from ruby_schemas.registry import decode

if TYPE_CHECKING:
    from .conftest import HomeAssistant

ENTITY = "input_boolean.lamp_power"
BUTTON = """
rules:
  - id: ha_button_turns_lamp_power_on
    description: the test button b1 turns input_boolean.lamp_power on
    triggers:
      - {kind: event, event_type: ruby_test_button, event_data: {button: b1}}
    actions:
      - kind: call
        service: input_boolean.turn_on
        target: {entity_id: input_boolean.lamp_power}
"""
BARRIER = """
rules:
  - id: ha_barrier
    description: listens to a second event type, so that the test can see the pipeline drained
    triggers:
      - {kind: event, event_type: ruby_test_barrier}
    actions:
      - {kind: publish, event_type: barrier_seen}
"""


@pytest_asyncio.fixture
async def secure_gateway(
    secure_installation: Installation, home_assistant: HomeAssistant
) -> AsyncIterator[Gateway]:
    config = BridgeConfig(
        url=home_assistant.url,
        token=Secret(home_assistant.token, "ha token"),
        ping_interval=1.0,
        ping_timeout=2.0,
        backoff_initial=0.1,
        backoff_max=0.5,
    )
    async with running_secure_gateway(secure_installation, config, backoff=(0.2,) * 4) as gw:
        yield gw


async def state(client: HaClient, entity: str) -> str:
    reply = await client.command("get_states")
    return str(next(s["state"] for s in reply["result"] if s["entity_id"] == entity))


async def turn_off(client: HaClient, entity: str) -> None:
    reply = await client.command(
        "call_service", domain="input_boolean", service="turn_off", target={"entity_id": entity}
    )
    assert reply["success"], reply
    await eventually(lambda: _is(client, entity, "off"), message=f"{entity} off")


async def fire(client: HaClient, event_type: str, data: dict[str, Any]) -> str:
    """Fire through HA's WebSocket API; return the event's context id."""
    reply = await client.fire_event(event_type, data)
    assert reply["success"], reply
    return str(reply["result"]["context"]["id"])


async def turn_ons(client: HaClient, subscription: int) -> int:
    """``input_boolean.turn_on`` calls on ``ENTITY`` HA executed so far."""
    assert (await client.command("ping"))["type"] == "pong"  # everything before it arrived
    return sum(
        1
        for m in client.inbox
        if m.get("type") == "event"
        and m.get("id") == subscription
        and m["event"]["data"].get("service") == "turn_on"
        and m["event"]["data"].get("service_data", {}).get("entity_id") == [ENTITY]
    )


async def stored(js: JetStreamContext, topo: Topology, event_type: str) -> list[EventFiredV1]:
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        data = decode((await js.get_msg(stream, seq)).data or b"").data
        if isinstance(data, EventFiredV1) and data.event_type == event_type:
            out.append(data)
    return out


async def test_a_rule_on_a_home_assistant_bus_event_fires(
    secure_installation: Installation,
    secure_gateway: Gateway,
    ha_ws: HaClient,
    tmp_path: Path,
) -> None:
    installation, topo = secure_installation, secure_installation.topology
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "button.yaml").write_text(BUTTON)
    (rules / "barrier.yaml").write_text(BARRIER)
    operator = await installation.connect("operator")
    js = operator.jetstream()
    status = await js.key_value(topo.bucket(STATUS).bucket)
    env = {**os.environ, **installation.environ(), "RUBY_RULES_DIR": str(rules)}
    engine = engine_process(env, tmp_path / "engine.log")
    forwarding = secure_gateway.bridge.status.ha_events
    started = datetime.now(UTC)

    def settled() -> Awaitable[bool]:
        return consumers_idle(js, topo, ENGINE, GATEWAY)

    try:
        await turn_off(ha_ws, ENTITY)
        await engine.start()
        await eventually(lambda: engine_ready(status, started), within=60, message="engine ready")
        await eventually(
            lambda: forwarding.subscribed == ("ruby_test_barrier", "ruby_test_button"),
            message="the gateway subscribed on Home Assistant to what the rules need",
        )
        await eventually(settled, message="engine and gateway idle")
        subscription = await ha_ws.subscribe("call_service")
        ha_ws.inbox.clear()

        # 1. Other data does not match; the button's own does: one call, executed by HA.
        other = await fire(ha_ws, "ruby_test_button", {"button": "b2"})
        pressed = await fire(ha_ws, "ruby_test_button", {"button": "b1"})
        await eventually(lambda: _is(ha_ws, ENTITY, "on"), message="lamp_power turned on")
        await eventually(settled, message="engine and gateway idle")
        assert await turn_ons(ha_ws, subscription) == 1
        events = await stored(js, topo, "ruby_test_button")
        assert [e.context_id for e in events] == [other, pressed]  # HA's own contexts
        assert events[1].data == {"button": "b1"}

        # 2. Without the rule, the gateway unsubscribes and the button no longer reaches EVENTS.
        (rules / "button.yaml").unlink()
        await eventually(
            lambda: forwarding.subscribed == ("ruby_test_barrier",),
            message="ruby_test_button unsubscribed",
        )
        await turn_off(ha_ws, ENTITY)
        await fire(ha_ws, "ruby_test_button", {"button": "b1"})
        barrier = await fire(ha_ws, "ruby_test_barrier", {})

        async def barrier_stored() -> bool:
            return [e.context_id for e in await stored(js, topo, "ruby_test_barrier")] == [barrier]

        await eventually(barrier_stored, message="the later event stored")
        await eventually(settled, message="engine and gateway idle")
        assert len(await stored(js, topo, "ruby_test_button")) == 2
        assert await state(ha_ws, ENTITY) == "off"
        assert await turn_ons(ha_ws, subscription) == 1
        assert (forwarding.lost, forwarding.refused) == (0, ())
    finally:
        code = await engine.stop()
        await operator.drain()
    assert code == 0, engine.log.read_text()


async def _is(client: HaClient, entity: str, value: str) -> bool:
    return await state(client, entity) == value


# --- the simulator's fire_event against Home Assistant's ------------------------------------


def shape(value: Any, key: str = "") -> Any:
    """``value`` with every value reduced to its JSON type, but for the telling fields."""
    if key in ("type", "success", "code", "event_type", "origin", "translation_key"):
        return value
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value if value is None or isinstance(value, bool) else type(value).__name__


async def fire_event_transcript(url: str, token: str) -> dict[str, Any]:
    client = await HaClient.connect(url, token)
    out: dict[str, Any] = {}
    try:
        sub = await client.subscribe("ruby_drift")
        result = await client.fire_event("ruby_drift", {"n": 1, "list": [1, "a"]})
        received = [*client.inbox, result]
        client.inbox.clear()
        out["order"] = ["event" if m.get("id") == sub else m["type"] for m in received]
        event = next((m for m in received if m.get("id") == sub), None) or (
            await client.next_event()
        )
        out["result"], out["event"] = shape(result), shape(event)
        out["linkage"] = {
            "event context is the result's": event["event"]["context"]
            == result["result"]["context"],
            "data as fired": event["event"]["data"] == {"n": 1, "list": [1, "a"]},
            "a user caused it": isinstance(result["result"]["context"]["user_id"], str),
        }
        await client.fire_event("ruby_drift")
        out["no_data"] = (await client.next_event())["event"]["data"]
        out["data_not_a_mapping"] = shape(await client.fire_event("ruby_drift", [1]))  # type: ignore[arg-type]
        out["no_event_type"] = shape(await client.command("fire_event"))
        out["too_long"] = shape(await client.fire_event("x" * 65))
        out["at_the_limit"] = shape(await client.fire_event("x" * 64))
    finally:
        await client.close()
    return out


async def test_the_simulators_fire_event_answers_like_home_assistant(
    home_assistant: HomeAssistant, hasim: Simulator
) -> None:
    real = await fire_event_transcript(home_assistant.url, home_assistant.token)
    simulated = await fire_event_transcript(hasim.url, hasim.token)
    assert simulated == real
