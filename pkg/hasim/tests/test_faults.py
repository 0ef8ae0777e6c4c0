"""Each fault, seen by a real client: drops, muted pings, delays, refused auth, failing
services, going down and up, bursts and single entity changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from ruby_hasim import Simulator
from ruby_hasim.testing import HaClient

Connect = Callable[..., Awaitable[HaClient]]


@pytest.mark.parametrize("abrupt", [True, False])
async def test_drop_connections(connect: Connect, sim: Simulator, abrupt: bool) -> None:
    first, second = await connect(), await connect()
    await sim.wait_for_clients(2)
    assert await sim.faults.drop_connections(abrupt=abrupt) == 2
    for client in (first, second):
        with pytest.raises(ConnectionError):
            await client.receive()
    again = await connect()
    assert await again.command("ping") == {"id": 1, "type": "pong"}
    assert sim.connections_made == 3


async def test_muted_pings_get_no_answer(client: HaClient, sim: Simulator) -> None:
    sim.faults.mute_pings()
    await client.send({"id": 1, "type": "ping"})
    with pytest.raises(TimeoutError):
        await client.reply(1, timeout=0.3)
    await client.ws.ping(b"frame")
    with pytest.raises(TimeoutError):
        await client.ws.receive(timeout=0.2)
    sim.faults.mute_pings(False)
    await client.send({"id": 2, "type": "ping"})
    assert await client.reply(2) == {"id": 2, "type": "pong"}


async def test_delayed_responses_keep_their_order(client: HaClient, sim: Simulator) -> None:
    await client.subscribe()
    sim.faults.delay_responses(0.3)
    started = time.monotonic()
    await client.send({"id": 2, "type": "ping"})
    sim.set_state("switch.fan", "on")
    assert await client.reply(2) == {"id": 2, "type": "pong"}
    assert time.monotonic() - started >= 0.3
    assert (await client.next_event(timeout=1))["event"]["data"]["entity_id"] == "switch.fan"
    sim.faults.delay_responses(0)
    started = time.monotonic()
    await client.command("ping")
    assert time.monotonic() - started < 0.2


async def test_refused_auth(connect: Connect, sim: Simulator) -> None:
    sim.faults.refuse_auth()
    client = await connect(token=None)
    await client.receive()
    await client.send({"type": "auth", "access_token": sim.token})
    assert (await client.receive())["type"] == "auth_invalid"
    sim.faults.refuse_auth(False)
    assert await (await connect()).command("ping") == {"id": 1, "type": "pong"}
    assert sim.auth_attempts == 2


@pytest.mark.parametrize("code", ["home_assistant_error", "unauthorized", "unknown_error"])
async def test_failing_service(client: HaClient, sim: Simulator, code: str) -> None:
    sim.faults.fail_service("switch", "turn_on", code, "Device unreachable")
    reply = await client.command(
        "call_service", domain="switch", service="turn_on", target={"entity_id": "switch.fan"}
    )
    assert reply["error"] == {"code": code, "message": "Device unreachable"}
    assert sim.states["switch.fan"].state == "off"
    assert sim.calls[("switch", "turn_on", "switch.fan")] == 1
    sim.faults.restore_service("switch", "turn_on")
    reply = await client.command(
        "call_service", domain="switch", service="turn_on", target={"entity_id": "switch.fan"}
    )
    assert reply["success"] is True
    assert sim.states["switch.fan"].state == "on"


def test_fail_service_refuses_unknown_codes(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        sim.faults.fail_service("switch", "turn_on", "oops")


async def test_go_down_and_come_back_changed(connect: Connect, sim: Simulator) -> None:
    client = await connect()
    await client.subscribe()
    await sim.faults.go_down()
    with pytest.raises(ConnectionError):
        await client.receive()
    with pytest.raises(aiohttp.ClientConnectorError):
        await connect()
    # While down: many changes, one removal, one addition; nobody hears of them.
    for i in range(50):
        sim.set_state("sensor.power_usage", f"{i}.0")
    sim.remove_entity("switch.garden_pump")
    sim.set_state("switch.sprinkler", "off", {"friendly_name": "Sprinkler"})
    port = sim.port
    await sim.faults.go_up()
    assert sim.port == port
    fresh = await connect()
    states = {s["entity_id"]: s for s in (await fresh.command("get_states"))["result"]}
    assert states["sensor.power_usage"]["state"] == "49.0"
    assert "switch.garden_pump" not in states
    assert states["switch.sprinkler"]["attributes"] == {"friendly_name": "Sprinkler"}


async def test_burst(client: HaClient, sim: Simulator) -> None:
    await client.subscribe("state_changed")
    entities = ["light.kitchen", "switch.fan"]
    assert await sim.faults.burst(500, entities) == 500
    seen = [await client.next_event() for _ in range(500)]
    assert [e["event"]["data"]["entity_id"] for e in seen[:4]] == entities * 2
    assert len({e["event"]["context"]["id"] for e in seen}) == 500
    kitchen = [e["event"]["data"]["new_state"] for e in seen[::2]]
    assert [s["state"] for s in kitchen[:2]] == ["on", "off"]
    assert [s["attributes"]["brightness"] for s in kitchen[:2]] == [255, None]


async def test_change_one_entity(client: HaClient, sim: Simulator) -> None:
    await client.subscribe("state_changed")
    sim.set_state("binary_sensor.hallway_motion", "on")
    event = (await client.next_event())["event"]
    assert event["data"]["new_state"]["state"] == "on"
    assert event["data"]["new_state"]["attributes"]["device_class"] == "motion"
    assert event["context"]["parent_id"] is None
    sim.set_state("sensor.living_room_temperature", attributes={"battery": 80})
    data = (await client.next_event())["event"]["data"]
    assert data["new_state"]["attributes"]["battery"] == 80
    assert data["new_state"]["attributes"]["unit_of_measurement"] == "°C"
    assert data["new_state"]["last_changed"] == data["old_state"]["last_changed"]
    sim.remove_entity("switch.fan")
    data = (await client.next_event())["event"]["data"]
    assert (data["entity_id"], data["new_state"]) == ("switch.fan", None)
    sim.set_state("switch.fan", "on")
    data = (await client.next_event())["event"]["data"]
    assert (data["old_state"], data["new_state"]["state"]) == (None, "on")


async def test_wait_for_clients(connect: Connect, sim: Simulator) -> None:
    with pytest.raises(TimeoutError):
        await sim.wait_for_clients(1, timeout=0.05)
    waiter = asyncio.create_task(sim.wait_for_clients(1, subscribed=True))
    client = await connect()
    assert not waiter.done()
    await client.subscribe()
    await asyncio.wait_for(waiter, 2)
    assert sim.clients == sim.subscribers == 1
