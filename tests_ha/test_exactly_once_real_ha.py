"""Exactly once against a real Home Assistant: a gateway process killed with kill -9 after HA
executed its call and before the ledger recorded it does not call again after its restart.

A proxy between the gateway and HA holds back HA's replies, so the gateway never learns that
its call ran: the window of ADR-0025. The observer counts the ``call_service`` events HA fired.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError

from ruby_ctl.testing import Installation
from ruby_gateway.testing import HoldingProxy, successive_gateways
from ruby_hasim.testing import HaClient
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import EVENTS, GATEWAY, IDEMPOTENCY
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1, ServiceTarget
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.registry import decode

if TYPE_CHECKING:
    from .conftest import HomeAssistant

ENTITY = "input_boolean.motion"


async def ha_state(client: HaClient) -> dict[str, object]:
    reply = await client.command("get_states")
    return dict(next(s for s in reply["result"] if s["entity_id"] == ENTITY))


async def turn_on_calls(client: HaClient, subscription: int) -> int:
    assert (await client.command("ping"))["type"] == "pong"  # everything before it arrived
    return sum(
        1
        for m in client.inbox
        if m.get("type") == "event"
        and m.get("id") == subscription
        and m["event"]["data"].get("service") == "turn_on"
        and m["event"]["data"].get("service_data", {}).get("entity_id") == [ENTITY]
    )


async def test_a_gateway_killed_after_home_assistants_call_does_not_call_again(
    secure_installation: Installation,
    home_assistant: HomeAssistant,
    ha_ws: HaClient,
    tmp_path: Path,
) -> None:
    inst = secure_installation
    inst.store_ha_token(home_assistant.token)
    reply = await ha_ws.command(
        "call_service", domain="input_boolean", service="turn_off", target={"entity_id": ENTITY}
    )
    assert reply["success"], reply
    subscription = await ha_ws.subscribe("call_service")
    ha_ws.inbox.clear()
    proxy = HoldingProxy("127.0.0.1", home_assistant.port)
    await proxy.start()
    first, second = successive_gateways(inst.environ(), proxy.url, tmp_path)
    operator = await inst.connect("operator")
    js = operator.jetstream()
    topo = inst.topology
    command = CallServiceV1(
        command_id=new_id(),
        domain="input_boolean",
        service="turn_on",
        target=ServiceTarget(entity_id=(ENTITY,)),
        deadline=datetime.now(UTC) + timedelta(seconds=60),
    )
    try:
        await first.start()
        await eventually(lambda: "home assistant connected" in first.events(), within=60)
        proxy.hold()
        engine = await inst.connect("engine")
        publisher = Publisher(engine)
        envelope = make_envelope(command, source="ruby/engine", message_id=command.command_id)
        subject = topo.subjects.command("input_boolean", "turn_on")
        await publisher.publish([Outbound(subject, envelope)])
        await publisher.close()
        await engine.drain()

        async def executed() -> bool:
            return (await ha_state(ha_ws))["state"] == "on"

        await eventually(executed, within=20, message="HA executed the call")
        await first.kill9()  # HA's reply never reached it: the ledger still says pending
        proxy.release()
        ledger = await js.key_value(topo.bucket(IDEMPOTENCY).bucket)
        left = json.loads((await ledger.get(f"cmd.{command.command_id}")).value or b"{}")
        assert left["state"] == "pending"

        await second.start()
        subject = topo.subjects.cmd_outcome("succeeded", "input_boolean", "turn_on")

        async def outcome() -> CommandOutcomeV1 | None:
            try:
                raw = await js.get_last_msg(topo.stream(EVENTS).name, subject)
            except NotFoundError:  # not published yet
                return None
            payload = decode(raw.data or b"").data
            return payload if isinstance(payload, CommandOutcomeV1) else None

        async def published() -> bool:
            return await outcome() is not None

        await eventually(published, within=30, message="the command's outcome")
        found = await outcome()
        assert found is not None
        assert found.command_id == command.command_id
        context = (await ha_state(ha_ws))["context"]
        assert isinstance(context, dict)
        assert found.ha_context_id == context["id"]
        await eventually(lambda: consumers_idle(js, topo, GATEWAY), within=20)
        assert await turn_on_calls(ha_ws, subscription) == 1  # the dead gateway's only
        assert "command claimed by a dead gateway" in second.events()
    finally:
        for process in (first, second):
            if process.process is not None and process.process.returncode is None:
                await process.stop()
        await operator.drain()
        await proxy.close()
