"""The WebSocket protocol rules, each checked with a real aiohttp client against a simulator."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import aiohttp
import pytest

from ruby_hasim import HA_VERSION, Simulator
from ruby_hasim.testing import HaClient

Connect = Callable[..., Awaitable[HaClient]]
Check = Callable[[Any], Any]


async def test_auth_handshake(connect: Connect, sim: Simulator) -> None:
    client = await connect(token=None)
    assert await client.receive() == {"type": "auth_required", "ha_version": HA_VERSION}
    await client.send({"type": "auth", "access_token": sim.token})
    assert await client.receive() == {"type": "auth_ok", "ha_version": HA_VERSION}
    assert sim.auth_attempts == 1
    assert sim.connections_made == 1


async def test_wrong_token_is_refused_and_closed(connect: Connect, sim: Simulator) -> None:
    client = await connect(token=None)
    await client.receive()
    await client.send({"type": "auth", "access_token": "wrong"})
    assert await client.receive() == {
        "type": "auth_invalid",
        "message": "Invalid access token or password",
    }
    with pytest.raises(ConnectionError):
        await client.receive()
    assert sim.auth_attempts == 1
    assert sim.stats.auth_failures == 1
    assert sim.clients == 0


@pytest.mark.parametrize(
    "auth",
    [
        {"access_token": "x"},
        {"type": "auth", "access_token": 5},
        {"type": "auth", "access_token": "x", "extra": 1},
    ],
)
async def test_malformed_auth_is_refused(connect: Connect, auth: dict[str, Any]) -> None:
    client = await connect(token=None)
    await client.receive()
    await client.send(auth)
    reply = await client.receive()
    assert reply["type"] == "auth_invalid"
    assert reply["message"].startswith("Auth message incorrectly formatted: ")
    with pytest.raises(ConnectionError):
        await client.receive()


async def test_ids_must_increase(client: HaClient) -> None:
    await client.send({"id": 5, "type": "ping"})
    assert await client.receive() == {"id": 5, "type": "pong"}
    for reused in (5, 4):
        await client.send({"id": reused, "type": "ping"})
        assert await client.receive() == {
            "id": reused,
            "type": "result",
            "success": False,
            "error": {"code": "id_reuse", "message": "Identifier values have to increase."},
        }
    await client.send({"id": 6, "type": "ping"})
    assert await client.receive() == {"id": 6, "type": "pong"}


@pytest.mark.parametrize(
    "message", [{"type": "ping"}, {"id": 0, "type": "ping"}, {"id": "7", "type": "ping"}, [1, 2]]
)
async def test_malformed_command_is_invalid_format(client: HaClient, message: Any) -> None:
    await client.ws.send_str(json.dumps(message))
    reply = await client.receive()
    assert reply["success"] is False
    assert reply["error"] == {"code": "invalid_format", "message": "Message incorrectly formatted."}


async def test_unknown_command_does_not_use_up_the_id(client: HaClient) -> None:
    await client.send({"id": 3, "type": "no_such_command"})
    reply = await client.receive()
    assert reply["error"] == {"code": "unknown_command", "message": "Unknown command."}
    await client.send({"id": 3, "type": "ping"})
    assert await client.receive() == {"id": 3, "type": "pong"}


async def test_extra_keys_are_invalid_format(client: HaClient) -> None:
    reply = await client.command("get_states", surprise=True)
    assert reply["error"]["code"] == "invalid_format"
    assert "extra keys not allowed" in reply["error"]["message"]


async def test_invalid_json_closes_the_connection(client: HaClient) -> None:
    await client.ws.send_str("{not json")
    with pytest.raises(ConnectionError):
        await client.receive()


async def test_ping_pong(client: HaClient) -> None:
    assert await client.command("ping") == {"id": 1, "type": "pong"}


async def test_get_states(
    client: HaClient, sim: Simulator, check_states: Check, check_context: Check
) -> None:
    reply = await client.command("get_states")
    assert reply["success"] is True
    states = check_states(reply["result"])
    assert {s.entity_id for s in states} == set(sim.states)
    for raw, state in zip(reply["result"], states, strict=True):
        assert set(raw) == {
            "entity_id",
            "state",
            "attributes",
            "last_changed",
            "last_updated",
            "last_reported",
            "context",
        }
        assert raw["last_changed"].endswith("+00:00")
        assert state.last_updated.tzinfo == UTC
        assert "friendly_name" in state.attributes
        check_context(raw["context"])


async def test_get_config(client: HaClient) -> None:
    reply = await client.command("get_config")
    assert reply["result"]["state"] == "RUNNING"
    assert reply["result"]["version"] == HA_VERSION


async def test_get_services_lists_what_call_service_accepts(client: HaClient) -> None:
    services = (await client.command("get_services"))["result"]
    assert set(services["input_boolean"]) == {"turn_on", "turn_off", "toggle"}
    assert services["input_number"]["set_value"]["fields"] == {"value": {"required": True}}
    assert "brightness" in services["light"]["turn_on"]["fields"]
    for domain, named in services.items():
        for service in named:
            reply = await client.command(
                "call_service", domain=domain, service=service, target={"entity_id": []}
            )
            assert reply.get("error", {}).get("code") != "not_found", (domain, service)


async def test_subscribe_all_events(client: HaClient, sim: Simulator) -> None:
    reply = await client.command("subscribe_events")
    assert reply == {"id": 1, "type": "result", "success": True, "result": None}
    sim.set_state("sensor.power_usage", "500.0")
    event = await client.next_event()
    assert event["id"] == 1
    assert event["event"]["event_type"] == "state_changed"
    assert event["event"]["origin"] == "LOCAL"
    data = event["event"]["data"]
    assert data["entity_id"] == "sensor.power_usage"
    assert data["old_state"]["state"] == "412.3"
    assert data["new_state"]["state"] == "500.0"


async def test_subscribe_one_event_type(client: HaClient) -> None:
    sub = await client.subscribe("state_changed")
    result = await client.command(
        "call_service", domain="switch", service="turn_on", target={"entity_id": "switch.fan"}
    )
    assert result["success"]
    event = await client.next_event()
    assert event["id"] == sub
    assert event["event"]["event_type"] == "state_changed"
    assert not client.inbox


async def test_unsubscribe(client: HaClient, sim: Simulator) -> None:
    sub = await client.subscribe()
    reply = await client.command("unsubscribe_events", subscription=sub)
    assert reply["success"] is True
    assert reply["result"] is None
    sim.set_state("switch.fan", "on")
    assert await client.command("ping") == {"id": 3, "type": "pong"}
    assert not client.inbox


async def test_unsubscribe_unknown_is_not_found(client: HaClient) -> None:
    reply = await client.command("unsubscribe_events", subscription=99)
    assert reply["error"] == {"code": "not_found", "message": "Subscription not found."}


async def test_coalesced_messages_arrive_as_arrays(client: HaClient, sim: Simulator) -> None:
    reply = await client.command("supported_features", features={"coalesce_messages": 1})
    assert reply["success"] is True
    await client.subscribe("state_changed")
    await sim.faults.burst(20)
    raw = await client.ws.receive_json(timeout=5)
    assert isinstance(raw, list)
    assert len(raw) > 1


async def test_websocket_ping_frames_are_answered(client: HaClient) -> None:
    await client.ws.ping(b"hi")
    msg = await client.ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.PONG
    assert msg.data == b"hi"
