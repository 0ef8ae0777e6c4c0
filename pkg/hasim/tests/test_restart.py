"""A restart of Home Assistant, as a WebSocket client sees one (ADR-0032; the real one is
checked in tests_ha/test_lifecycle_real_ha.py): a normal close frame and nothing before it,
connections refused, every state written anew, ``get_config`` not yet running, then
``homeassistant_start`` and ``homeassistant_started``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from ruby_hasim import Simulator
from ruby_hasim.testing import HaClient

Connect = Callable[..., Awaitable[HaClient]]


async def core_state(client: HaClient) -> str:
    reply = await client.command("get_config")
    return str(reply["result"]["state"])


async def test_a_restart_closes_normally_refuses_then_starts_with_every_state_new(
    connect: Connect, sim: Simulator
) -> None:
    client = await connect()
    assert await core_state(client) == "RUNNING"
    await client.subscribe("homeassistant_stop")
    before = {entity: state.last_changed for entity, state in sim.states.items()}

    await sim.shut_down()
    with pytest.raises(ConnectionError, match="CLOSE 1000"):  # no event, a normal close
        await client.receive()
    with pytest.raises(aiohttp.ClientConnectorError):
        await HaClient.connect(sim.url, sim.token)

    await sim.boot(start=False)
    starting = await connect()
    assert await core_state(starting) == "NOT_RUNNING"
    assert before.keys() == sim.states.keys()
    assert all(sim.states[e].last_changed > changed for e, changed in before.items())
    states = (await starting.command("get_states"))["result"]
    assert min(s["last_changed"] for s in states) > max(c.isoformat() for c in before.values())
    await starting.subscribe("homeassistant_start")
    await starting.subscribe("homeassistant_started")

    sim.finish_start()
    assert [(await starting.next_event())["event"]["event_type"] for _ in range(2)] == [
        "homeassistant_start",
        "homeassistant_started",
    ]
    assert await core_state(starting) == "RUNNING"
