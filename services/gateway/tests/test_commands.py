"""Commands from COMMANDS: one HA call per command id, classified failures, outcomes audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import Gateway, running_gateway
from ruby_hasim.server import Simulator
from ruby_natsx.testing import eventually
from ruby_natsx.topology import (
    AUDIT,
    COMMANDS,
    DLQ,
    EVENTS,
    GATEWAY,
    Topology,
)
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1, ServiceTarget
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.registry import decode, encode


@pytest_asyncio.fixture
async def gateway(
    nc: Client, topology_applied: Topology, hasim: Simulator
) -> AsyncIterator[Gateway]:
    config = BridgeConfig(
        url=hasim.url,
        token=Secret(hasim.token, "ha token"),
        ping_interval=0.5,
        ping_timeout=0.5,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    async with running_gateway(
        nc, topology_applied.subjects, config, owner="gateway-test", backoff=(0.1, 0.1, 0.1, 0.1)
    ) as gateway:
        yield gateway


async def send(js: JetStreamContext, topo: Topology, command: CallServiceV1, msg_id: str) -> None:
    envelope = make_envelope(command, source="ruby/engine", message_id=msg_id)
    await js.publish(
        topo.subjects.command(command.domain, command.service),
        encode(envelope),
        headers={"Nats-Msg-Id": msg_id},
    )


def light_on(entity: str, *, deadline: timedelta = timedelta(seconds=30)) -> CallServiceV1:
    return CallServiceV1(
        command_id=new_id(),
        domain="light",
        service="turn_on",
        target=ServiceTarget(entity_id=(entity,)),
        data={"brightness": 120},
        deadline=datetime.now(UTC) + deadline,
    )


async def last(js: JetStreamContext, stream: str, subject: str) -> object:
    return decode((await js.get_last_msg(stream, subject)).data or b"").data


async def test_a_command_delivered_three_times_calls_home_assistant_once(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    command = light_on(light)
    for attempt in range(3):  # three deliveries of one command (three messages)
        await send(js, topo, command, f"{command.command_id}.{attempt}")
    await eventually(lambda: gateway.runner.stats.acked == 3)
    assert hasim.calls[("light", "turn_on", light)] == 1
    assert hasim.states[light].state == "on"
    outcome = await last(
        js, topo.stream(EVENTS).name, topo.subjects.cmd_outcome("succeeded", "light", "turn_on")
    )
    assert isinstance(outcome, CommandOutcomeV1)
    assert outcome.command_id == command.command_id
    assert outcome.ha_context_id
    info = await js.stream_info(
        topo.stream(EVENTS).name, subjects_filter=topo.subjects.outcomes_all
    )
    assert sum((info.state.subjects or {}).values()) == 1  # one outcome, however many deliveries
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


async def test_an_unknown_service_is_rejected_dead_lettered_and_audited(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    bad = CallServiceV1(
        command_id=new_id(),
        domain="light",
        service="explode",
        deadline=datetime.now(UTC) + timedelta(seconds=30),
    )
    await send(js, topo, bad, bad.command_id)
    await eventually(lambda: gateway.runner.stats.dead_lettered == 1)
    outcome = await last(
        js, topo.stream(EVENTS).name, topo.subjects.cmd_outcome("rejected", "light", "explode")
    )
    assert isinstance(outcome, CommandOutcomeV1)
    assert outcome.error_code == "not_found"
    letter = await last(
        js, topo.stream(DLQ).name, topo.subjects.dlq(topo.stream(COMMANDS).name, GATEWAY)
    )
    assert isinstance(letter, DeadLetterV1)
    assert letter.reason == "permanent_error"
    audit = await last(
        js, topo.stream(AUDIT).name, topo.subjects.audit("gateway", "command_refused")
    )
    assert isinstance(audit, AuditRecordV1)
    assert audit.outcome == "failed"


async def test_a_command_while_home_assistant_is_down_is_retried_until_it_is_back(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    await hasim.faults.go_down()
    await eventually(lambda: not gateway.bridge.status.connected)
    command = light_on(light)
    await send(js, topo, command, command.command_id)
    await eventually(lambda: gateway.runner.stats.nacked >= 1, message="a transient failure")
    await hasim.faults.go_up()
    await eventually(lambda: hasim.calls[("light", "turn_on", light)] == 1, within=15)
    await eventually(lambda: gateway.runner.stats.acked == 1)


async def test_a_command_past_its_deadline_is_not_executed(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    late = light_on(light, deadline=timedelta(seconds=-1))
    await send(js, topo, late, late.command_id)
    await eventually(lambda: gateway.runner.stats.acked == 1)
    assert hasim.calls[("light", "turn_on", light)] == 0
    outcome = await last(
        js, topo.stream(EVENTS).name, topo.subjects.cmd_outcome("expired", "light", "turn_on")
    )
    assert isinstance(outcome, CommandOutcomeV1)
    assert outcome.outcome == "expired"


async def test_a_failing_service_is_retried_and_runs_once_when_it_recovers(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    hasim.faults.fail_service("light", "turn_on", "home_assistant_error", "device busy")
    command = light_on(light)
    await send(js, topo, command, command.command_id)
    await eventually(lambda: gateway.runner.stats.nacked >= 2, message="retried while failing")
    assert hasim.states[light].state == "off"  # the failed calls changed nothing
    failed_calls = hasim.calls[("light", "turn_on", light)]
    hasim.faults.restore_service("light", "turn_on")
    await eventually(lambda: gateway.runner.stats.acked == 1, within=15)
    assert hasim.calls[("light", "turn_on", light)] == failed_calls + 1  # one successful call
    assert hasim.states[light].state == "on"
    assert gateway.runner.stats.dead_lettered == 0
