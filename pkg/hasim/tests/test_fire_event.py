"""`fire_event` and event-type subscriptions, as Home Assistant's WebSocket API has them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ruby_hasim import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import eventually
from ruby_schemas.ha import HaContext

Connect = Callable[..., Awaitable[HaClient]]
CheckContext = Callable[[dict[str, Any]], HaContext]


async def test_fire_event_reaches_subscribers_of_its_type_before_the_result(
    connect: Connect, sim: Simulator, check_context: CheckContext
) -> None:
    buttons, everything, other = await connect(), await connect(), await connect()
    button_sub = await buttons.subscribe("zha_event")
    all_sub = await everything.subscribe()
    await other.subscribe("deconz_event")
    caller = await connect()

    reply = await caller.fire_event("zha_event", {"command": "on", "args": [1]})

    assert reply["success"] is True
    context = check_context(reply["result"]["context"])
    assert context.user_id == sim.user_id
    assert context.parent_id is None
    for client, sub in ((buttons, button_sub), (everything, all_sub)):
        event = await client.next_event()
        assert event["id"] == sub
        assert event["event"]["event_type"] == "zha_event"
        assert event["event"]["data"] == {"command": "on", "args": [1]}
        assert event["event"]["origin"] == "LOCAL"
        assert event["event"]["context"] == reply["result"]["context"]
    assert await other.command("ping") == {"id": 2, "type": "pong"}
    assert not other.inbox  # a deconz_event subscription sees no zha_event


async def test_a_subscriber_that_fires_gets_the_event_before_the_result(
    client: HaClient,
) -> None:
    sub = await client.subscribe("ruby_test")
    iden = client.next_id
    await client.send({"id": iden, "type": "fire_event", "event_type": "ruby_test"})
    first, second = await client.receive(), await client.receive()
    assert (first["type"], first["id"]) == ("event", sub)
    assert first["event"]["data"] == {}  # no event_data: empty data, as in Home Assistant
    assert (second["type"], second["id"], second["success"]) == ("result", iden, True)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "required key not provided @ data['event_type']"),
        ({"event_type": 5}, "invalid value for dictionary value @ data['event_type']"),
        ({"event_type": "x", "event_data": [1]}, "@ data['event_data']"),
        ({"event_type": "x", "event_data": None}, "@ data['event_data']"),
        ({"event_type": "x", "bogus": 1}, "extra keys not allowed @ data['bogus']"),
    ],
)
async def test_malformed_fire_event_is_invalid_format(
    client: HaClient, fields: dict[str, Any], problem: str
) -> None:
    await client.subscribe()
    reply = await client.command("fire_event", **fields)
    assert reply["success"] is False
    assert reply["error"]["code"] == "invalid_format"
    assert problem in reply["error"]["message"]
    assert not client.inbox  # nothing was fired


async def test_an_event_type_longer_than_64_characters_is_refused(client: HaClient) -> None:
    await client.subscribe()
    reply = await client.fire_event("x" * 65)
    assert reply["error"]["code"] == "home_assistant_error"
    assert reply["error"]["translation_key"] == "max_length_exceeded"
    assert reply["error"]["translation_placeholders"]["max_length"] == "64"
    assert (await client.fire_event("x" * 64))["success"] is True
    assert (await client.next_event())["event"]["event_type"] == "x" * 64


async def test_the_simulator_fires_an_event_as_an_integration_does(
    client: HaClient, sim: Simulator
) -> None:
    sub = await client.subscribe("zha_event")
    sim.fire_event("call_service", {"domain": "light"})  # a type nobody subscribed to
    fired = sim.fire_event("zha_event", {"device_ieee": "00:11", "command": "toggle"})
    event = await client.next_event()
    assert event["id"] == sub
    assert event["event"]["data"] == {"device_ieee": "00:11", "command": "toggle"}
    assert event["event"]["context"]["id"] == fired.context.id
    assert event["event"]["time_fired"] == fired.time_fired.isoformat()
    assert await client.command("ping") == {"id": 2, "type": "pong"}
    assert not client.inbox


async def test_subscribed_types_follow_subscribe_and_unsubscribe(
    connect: Connect, sim: Simulator
) -> None:
    first, second = await connect(), await connect()
    sub = await first.subscribe("zha_event")
    await first.subscribe("state_changed")
    await second.subscribe("zha_event")
    await second.subscribe()
    assert sim.subscribed_types == {"zha_event": 2, "state_changed": 1, "*": 1}
    assert (await first.command("unsubscribe_events", subscription=sub))["success"]
    assert sim.subscribed_types == {"zha_event": 1, "state_changed": 1, "*": 1}
    await second.close()
    await eventually(lambda: sim.clients == 1, message="the simulator saw the close")
    assert sim.subscribed_types == {"state_changed": 1}
