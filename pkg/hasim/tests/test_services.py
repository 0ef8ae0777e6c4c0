"""`call_service`: state changes, events, contexts, errors and the call count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ruby_hasim import Simulator
from ruby_hasim.testing import HaClient

Check = Callable[[Any], Any]


async def call(client: HaClient, domain: str, service: str, **fields: Any) -> dict[str, Any]:
    return await client.command("call_service", domain=domain, service=service, **fields)


async def test_light_turn_on_with_brightness(
    client: HaClient, sim: Simulator, check_context: Check
) -> None:
    await client.subscribe()
    target = {"entity_id": "light.kitchen"}
    reply = await call(client, "light", "turn_on", target=target, service_data={"brightness": 99})
    assert reply["success"] is True
    assert set(reply["result"]) == {"context"}
    context = check_context(reply["result"]["context"])
    assert context.user_id == sim.user_id
    assert context.parent_id is None
    # Events arrive before the result, in Home Assistant's order: call_service, state_changed.
    fired = await client.next_event()
    assert fired["event"]["event_type"] == "call_service"
    assert fired["event"]["data"] == {
        "domain": "light",
        "service": "turn_on",
        "service_data": {"brightness": 99, "entity_id": ["light.kitchen"]},  # listed, as HA does
    }
    assert fired["event"]["context"] == reply["result"]["context"]
    changed = await client.next_event()
    assert changed["event"]["event_type"] == "state_changed"
    new = changed["event"]["data"]["new_state"]
    assert new["state"] == "on"
    assert new["attributes"]["brightness"] == 99
    assert new["attributes"]["color_mode"] == "brightness"
    # As in Home Assistant, an entity changed by a service call carries the call's context.
    assert changed["event"]["context"] == reply["result"]["context"]
    assert new["context"] == reply["result"]["context"]
    assert sim.states["light.kitchen"].attributes["brightness"] == 99
    assert sim.calls[("light", "turn_on", "light.kitchen")] == 1


async def test_light_remembers_brightness_and_zero_turns_off(
    client: HaClient, sim: Simulator
) -> None:
    target = {"entity_id": "light.kitchen"}
    await call(client, "light", "turn_on", target=target)
    assert sim.states["light.kitchen"].attributes["brightness"] == 200  # from the home file
    await call(client, "light", "turn_off", target=target)
    off = sim.states["light.kitchen"]
    assert (off.state, off.attributes["brightness"], off.attributes["color_mode"]) == (
        "off",
        None,
        None,
    )
    await call(client, "light", "toggle", target=target)
    assert sim.states["light.kitchen"].attributes["brightness"] == 200
    await call(client, "light", "turn_on", target=target, service_data={"brightness_pct": 50})
    assert sim.states["light.kitchen"].attributes["brightness"] == 128
    await call(client, "light", "turn_on", target=target, service_data={"brightness": 0})
    assert sim.states["light.kitchen"].state == "off"


@pytest.mark.parametrize("domain", ["switch", "input_boolean", "light"])
async def test_on_off_toggle(client: HaClient, sim: Simulator, domain: str) -> None:
    entity = next(
        e for e in sim.states if e.startswith(f"{domain}.") and sim.states[e].state == "off"
    )
    for service, expected in (("turn_on", "on"), ("toggle", "off"), ("toggle", "on")):
        reply = await call(client, domain, service, target={"entity_id": [entity]})
        assert reply["success"] is True
        assert sim.states[entity].state == expected
    await call(client, domain, "turn_off", service_data={"entity_id": entity})
    assert sim.states[entity].state == "off"
    assert sim.calls[(domain, "toggle", entity)] == 2
    assert sim.calls[(domain, "turn_off", entity)] == 1


async def test_calls_are_counted_per_entity(client: HaClient, sim: Simulator) -> None:
    await call(client, "switch", "turn_on", target={"entity_id": "switch.fan, switch.coffee_maker"})
    await call(client, "light", "turn_on", target={"area_id": "kitchen"})
    await call(client, "switch", "turn_off")
    assert sim.calls == {
        ("switch", "turn_on", "switch.fan"): 1,
        ("switch", "turn_on", "switch.coffee_maker"): 1,
        ("light", "turn_on", "light.kitchen"): 1,
        ("switch", "turn_off", None): 1,
    }
    assert sim.states["light.kitchen"].state == "on"
    assert sim.states["light.hallway"].state == "off"


async def test_missing_entity_is_skipped_like_home_assistant(
    client: HaClient, sim: Simulator
) -> None:
    reply = await call(client, "light", "turn_on", target={"entity_id": "light.nowhere"})
    assert reply["success"] is True
    assert "light.nowhere" not in sim.states


async def test_input_number_set_value(client: HaClient, sim: Simulator) -> None:
    entity = "input_number.target_temperature"
    reply = await call(
        client,
        "input_number",
        "set_value",
        target={"entity_id": entity},
        service_data={"value": 22},
    )
    assert reply["success"] is True
    assert sim.states[entity].state == "22.0"
    await call(client, "input_number", "increment", target={"entity_id": entity})
    assert sim.states[entity].state == "22.5"
    out_of_range = await call(
        client,
        "input_number",
        "set_value",
        target={"entity_id": entity},
        service_data={"value": 99},
    )
    assert out_of_range["error"]["code"] == "invalid_format"
    assert out_of_range["error"]["message"].startswith(f"Invalid value for {entity}: 99.0")
    missing = await call(client, "input_number", "set_value", target={"entity_id": entity})
    assert missing["error"] == {
        "code": "invalid_format",
        "message": "required key not provided @ data['value']",
    }


@pytest.mark.parametrize(("domain", "service"), [("light", "explode"), ("vacuum", "start")])
async def test_unknown_service_is_not_found(client: HaClient, domain: str, service: str) -> None:
    reply = await call(client, domain, service)
    assert reply["error"]["code"] == "not_found"
    assert reply["error"]["message"] == f"Service {domain}.{service} not found."
    assert reply["error"]["translation_key"] == "service_not_found"
    assert reply["error"]["translation_placeholders"] == {"domain": domain, "service": service}


@pytest.mark.parametrize(
    "fields",
    [
        {"service_data": {"brightness": "bright"}},
        {"service_data": {"colour": "red"}},
        {"target": {"entity_id": "not an id"}},
        {"target": {"room": "kitchen"}},
        {"service_data": "light.kitchen"},
    ],
)
async def test_invalid_data_is_invalid_format(
    client: HaClient, sim: Simulator, fields: dict[str, Any]
) -> None:
    reply = await call(client, "light", "turn_on", **fields)
    assert reply["success"] is False
    assert reply["error"]["code"] == "invalid_format"
    assert not sim.calls


async def test_return_response_is_a_validation_error(client: HaClient, sim: Simulator) -> None:
    reply = await call(
        client, "switch", "turn_on", target={"entity_id": "switch.fan"}, return_response=True
    )
    assert reply["error"]["code"] == "service_validation_error"
    assert reply["error"]["message"].startswith("Validation error: ")
    assert sim.states["switch.fan"].state == "off"


async def test_last_changed_moves_only_with_the_state(client: HaClient, sim: Simulator) -> None:
    await client.subscribe("state_changed")
    before = sim.states["light.living_room"]
    target = {"entity_id": "light.living_room"}
    await call(client, "light", "turn_on", target=target, service_data={"brightness": 10})
    after = sim.states["light.living_room"]
    assert after.last_changed == before.last_changed
    assert after.last_updated > before.last_updated
    event = await client.next_event()
    new = event["event"]["data"]["new_state"]
    assert new["last_changed"] == before.last_changed.isoformat()
    assert new["last_updated"] == after.last_updated.isoformat()
    # Turning on a light that is on with the same brightness changes nothing: no event.
    await call(client, "light", "turn_on", target=target, service_data={"brightness": 10})
    assert sim.states["light.living_room"].last_updated == after.last_updated
    assert sim.states["light.living_room"].last_reported > after.last_reported
    await call(client, "light", "turn_off", target=target)
    assert sim.states["light.living_room"].last_changed > before.last_changed
    event = await client.next_event()
    assert event["event"]["data"]["new_state"]["state"] == "off"
    assert not client.inbox
