"""The gateway against a real Home Assistant: auth, projection, live events, commands, restart.

The same scenarios as ``tests/test_bridge.py`` and ``tests/test_commands.py``, with HA's own
WebSocket API on the other end. A separate client (``ha_ws``) observes HA independently: its
``get_states`` is the truth the projection is compared with, and its ``call_service`` event
subscription counts the service calls HA really executed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_gateway.bridge import Bridge, BridgeConfig
from ruby_gateway.commands import PERMANENT_CODES
from ruby_gateway.projection import load_projection
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT, COMMANDS, DLQ, EVENTS, GATEWAY, PROJECTION, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1, ServiceTarget
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.ha import HaState
from ruby_schemas.ha_events import StateChangedV1
from ruby_schemas.registry import decode, encode

if TYPE_CHECKING:  # fixtures' types only: pytest loads conftest.py itself
    from ruby_gateway.testing import Gateway

    from .conftest import HomeAssistant


async def ha_states(client: HaClient) -> dict[str, HaState]:
    """HA's states now, as the observer's ``get_states`` returns them."""
    reply = await client.command("get_states")
    assert reply["success"], reply
    return {s["entity_id"]: HaState.model_validate(s) for s in reply["result"]}


def projection_matches(
    gateway: Gateway, client: HaClient
) -> Callable[[], Coroutine[Any, Any, bool]]:
    """The gateway is connected and its projection holds exactly HA's current states."""

    async def check() -> bool:
        if not gateway.bridge.status.connected:
            return False
        states = await ha_states(client)
        projection = gateway.bridge.projection.snapshot()
        return set(projection) == set(states) and all(
            projection[e].state == s.state
            and projection[e].last_updated == s.last_updated
            and projection[e].context_id == s.context.id
            for e, s in states.items()
        )

    return check


async def published(js: JetStreamContext, topo: Topology) -> list[StateChangedV1]:
    """Every state change stored in EVENTS, in stream order."""
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        data = decode((await js.get_msg(stream, seq)).data or b"").data
        if isinstance(data, StateChangedV1):
            out.append(data)
    return out


async def set_boolean(client: HaClient, entity: str, on: bool) -> str:
    """Turn an input_boolean on or off through HA; return the call's context id."""
    reply = await client.command(
        "call_service",
        domain="input_boolean",
        service="turn_on" if on else "turn_off",
        target={"entity_id": entity},
    )
    assert reply["success"], reply
    return str(reply["result"]["context"]["id"])


async def send(js: JetStreamContext, topo: Topology, command: CallServiceV1, msg_id: str) -> None:
    envelope = make_envelope(command, source="ruby/engine", message_id=msg_id)
    await js.publish(
        topo.subjects.command(command.domain, command.service),
        encode(envelope),
        headers={"Nats-Msg-Id": msg_id},
    )


async def last(js: JetStreamContext, stream: str, subject: str) -> object:
    return decode((await js.get_last_msg(stream, subject)).data or b"").data


async def test_authenticates_and_projects_every_entity(
    gateway: Gateway,
    ha_ws: HaClient,
    nc: Client,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    topo = topology_applied
    connection = gateway.bridge.connection()
    assert connection is not None
    assert connection.ha_version  # from HA's auth_ok
    await eventually(projection_matches(gateway, ha_ws), message="projection equals HA's states")
    states = await ha_states(ha_ws)
    assert {"input_boolean.c", "light.test_lamp", "sensor.level_doubled"} <= set(states)

    first = await published(js, topo)
    assert sorted(c.entity_id for c in first) == sorted(states)  # each entity once
    assert all(c.reconciled for c in first)  # a new projection is filled by reconciliation
    stored = await load_projection(nc, topo.bucket(PROJECTION).bucket)
    assert stored.snapshot() == gateway.bridge.projection.snapshot()


async def test_a_refused_token_is_reported_and_audited(
    nc: Client, js: JetStreamContext, topology_applied: Topology, home_assistant: HomeAssistant
) -> None:
    topo = topology_applied
    config = BridgeConfig(
        url=home_assistant.url, token=Secret("not-a-valid-token", "ha token"), auth_backoff=60
    )
    bridge = Bridge(nc, topo.subjects, config, topo.bucket(PROJECTION).bucket)
    task = asyncio.create_task(bridge.run())
    audit_stream = topo.stream(AUDIT).name

    async def audited() -> bool:
        info = await js.stream_info(audit_stream)
        return info.state.messages > 0

    try:
        await eventually(audited, message="auth_refused audited")
        record = await last(js, audit_stream, topo.subjects.audit("gateway", "auth_refused"))
        assert isinstance(record, AuditRecordV1)
        assert record.outcome == "denied"
        assert "auth_invalid" in record.reason
        assert bridge.status.auth_failures == 1  # HA's auth_invalid, then a long wait
        assert bridge.status.sessions == 0
        assert not bridge.status.connected
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 10)


async def test_a_real_state_changed_is_published_live_with_its_context(
    gateway: Gateway, ha_ws: HaClient, js: JetStreamContext, topology_applied: Topology
) -> None:
    await eventually(projection_matches(gateway, ha_ws))
    entity = "input_boolean.d"
    was_on = (await ha_states(ha_ws))[entity].state == "on"
    before = len(await published(js, topology_applied))

    context_id = await set_boolean(ha_ws, entity, not was_on)
    await eventually(
        lambda: gateway.bridge.status.events_published > before, message="live change published"
    )
    await eventually(projection_matches(gateway, ha_ws))
    change = (await published(js, topology_applied))[before:]
    assert [c.entity_id for c in change] == [entity]
    live = change[0]
    assert not live.reconciled
    assert live.context_id == context_id  # the very state_changed HA fired for our call
    assert live.old_state is not None
    assert live.old_state.state == ("on" if was_on else "off")
    assert live.new_state is not None
    assert live.new_state.state == ("off" if was_on else "on")


async def test_a_command_delivered_three_times_calls_home_assistant_once(
    gateway: Gateway, ha_ws: HaClient, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    entity = "input_boolean.c"
    await set_boolean(ha_ws, entity, False)
    await eventually(projection_matches(gateway, ha_ws))
    subscription = await ha_ws.subscribe("call_service")
    ha_ws.inbox.clear()

    command = CallServiceV1(
        command_id=new_id(),
        domain="input_boolean",
        service="turn_on",
        target=ServiceTarget(entity_id=(entity,)),
        deadline=datetime.now(UTC) + timedelta(seconds=30),
    )
    for attempt in range(3):  # three deliveries of one command (three messages)
        await send(js, topo, command, f"{command.command_id}.{attempt}")
    await eventually(lambda: gateway.runner.stats.acked == 3, message="three deliveries acked")

    # Every handler run is over: a pong on the observer now comes after any call_service
    # event HA fired for the gateway's calls (one connection's messages keep their order).
    assert (await ha_ws.command("ping"))["type"] == "pong"
    calls = [
        m["event"]["data"]
        for m in ha_ws.inbox
        if m.get("type") == "event" and m.get("id") == subscription
    ]
    assert calls == [
        {"domain": "input_boolean", "service": "turn_on", "service_data": {"entity_id": [entity]}}
    ]

    outcome = await last(
        js,
        topo.stream(EVENTS).name,
        topo.subjects.cmd_outcome("succeeded", "input_boolean", "turn_on"),
    )
    assert isinstance(outcome, CommandOutcomeV1)
    assert outcome.command_id == command.command_id
    assert outcome.ha_context_id
    # Its effect: HA turned the boolean on, and the gateway published that very change.
    await eventually(projection_matches(gateway, ha_ws), message="the effect projected")
    assert (await ha_states(ha_ws))[entity].state == "on"
    effect = [c for c in await published(js, topo) if c.context_id == outcome.ha_context_id]
    assert [(c.entity_id, c.new_state.state if c.new_state else None) for c in effect] == [
        (entity, "on")
    ]
    audit = await last(
        js, topo.stream(AUDIT).name, topo.subjects.audit("gateway", "command_executed")
    )
    assert isinstance(audit, AuditRecordV1)
    assert audit.details == {
        "command_id": command.command_id,
        "ha_context_id": outcome.ha_context_id,
        "outcome": "succeeded",
        "error_code": None,
    }


async def test_an_unknown_service_is_rejected_by_home_assistant_and_dead_lettered(
    gateway: Gateway, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    bad = CallServiceV1(
        command_id=new_id(),
        domain="input_boolean",
        service="explode",
        target=ServiceTarget(entity_id=("input_boolean.e",)),
        deadline=datetime.now(UTC) + timedelta(seconds=30),
    )
    await send(js, topo, bad, bad.command_id)
    await eventually(lambda: gateway.runner.stats.dead_lettered == 1, message="dead-lettered")
    outcome = await last(
        js,
        topo.stream(EVENTS).name,
        topo.subjects.cmd_outcome("rejected", "input_boolean", "explode"),
    )
    assert isinstance(outcome, CommandOutcomeV1)
    assert outcome.error_code == "not_found"  # HA's real code, classified permanent
    assert outcome.error_code in PERMANENT_CODES
    letter = await last(
        js, topo.stream(DLQ).name, topo.subjects.dlq(topo.stream(COMMANDS).name, GATEWAY)
    )
    assert isinstance(letter, DeadLetterV1)
    assert letter.reason == "permanent_error"


def change_restored_state(ha: HomeAssistant, entity: str, to: str) -> str:
    """While HA is down: change the state HA will restore ``entity`` to; return the old one."""
    stored = json.loads(ha.restore_state.read_text())
    (item,) = (i for i in stored["data"] if i["state"]["entity_id"] == entity)
    old = str(item["state"]["state"])
    item["state"]["state"] = to
    ha.restore_state.write_text(json.dumps(stored))
    return old


def projected_state(gateway: Gateway, entity: str) -> str | None:
    projected = gateway.bridge.projection.get(entity)
    return projected.state if projected else None


async def test_an_entity_changed_while_home_assistant_was_down_is_reconciled(
    gateway: Gateway,
    home_assistant: HomeAssistant,
    ha_ws: HaClient,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    entity = "input_boolean.e"
    await set_boolean(ha_ws, entity, True)
    await eventually(projection_matches(gateway, ha_ws), message="projection before the stop")
    assert projected_state(gateway, entity) == "on"
    before = len(await published(js, topology_applied))
    sessions = gateway.bridge.status.sessions
    await ha_ws.close()

    # HA is stopped; while it is down the state it will come back with changes (HA restores
    # input_booleans from .storage/core.restore_state, written at its stop); HA starts again.
    stored = await home_assistant.restart_with(
        lambda: change_restored_state(home_assistant, entity, "off")
    )
    assert stored == "on"  # HA had stored what the gateway projected

    observer = await home_assistant.client()
    try:
        assert (await ha_states(observer))[entity].state == "off"  # HA came back changed
        await eventually(
            lambda: gateway.bridge.status.sessions == sessions + 1, message="gateway reconnected"
        )
        await eventually(projection_matches(gateway, observer), message="reconciled projection")
    finally:
        await observer.close()
    assert gateway.bridge.status.reconnects >= 1
    assert projected_state(gateway, entity) == "off"
    after = [c for c in (await published(js, topology_applied))[before:] if c.entity_id == entity]
    assert len(after) == 1, after  # published once, by reconciliation
    (reconciled,) = after
    assert reconciled.reconciled
    assert reconciled.old_state is not None
    assert reconciled.old_state.state == "on"
    assert reconciled.new_state is not None
    assert reconciled.new_state.state == "off"
