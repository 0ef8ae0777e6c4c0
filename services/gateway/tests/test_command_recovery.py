"""Nothing stale reaches a device, and a call made by a gateway that died is not made again.

In-process tests set up the ledger as a dead gateway leaves it (a pending claim of another
owner); the process test kills a real gateway process with kill -9 after Home Assistant
executed its call and before the ledger recorded it (HA's reply is held back by a proxy).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ruby_ctl.testing import Installation
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.commands import command_handler
from ruby_gateway.ordering import TargetOrder, in_turn
from ruby_gateway.testing import (
    ChangedTwice,
    Gateway,
    HoldingProxy,
    running_gateway,
    successive_gateways,
)
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.handler import Delivery, Outbound, chain
from ruby_natsx.idempotency import Claim, KvIdempotencyStore
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import AUDIT, EVENTS, GATEWAY, IDEMPOTENCY, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.base import Payload
from ruby_schemas.commands import CallServiceV1, CommandOutcomeV1, ServiceTarget
from ruby_schemas.envelope import Envelope, make_envelope, new_id
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
        nc, topology_applied.subjects, config, owner="gateway-now", backoff=(0.1,) * 4
    ) as gateway:
        yield gateway


def command(
    service: str, entity_ids: tuple[str, ...], *, backlog: str = "latest", domain: str = "light"
) -> CallServiceV1:
    return CallServiceV1.model_validate(
        {
            "command_id": new_id(),
            "domain": domain,
            "service": service,
            "target": ServiceTarget(entity_id=entity_ids),
            "deadline": datetime.now(UTC) + timedelta(seconds=60),
            "backlog": backlog,
        }
    )


async def send(
    js: JetStreamContext, topo: Topology, cmd: CallServiceV1, *, created: datetime | None = None
) -> None:
    envelope = make_envelope(cmd, source="ruby/engine", message_id=cmd.command_id, time=created)
    await js.publish(
        topo.subjects.command(cmd.domain, cmd.service),
        encode(envelope),
        headers={"Nats-Msg-Id": cmd.command_id},
    )


async def outcome_of(js: JetStreamContext, topo: Topology, command_id: str) -> CommandOutcomeV1:
    """The outcome event of ``command_id`` (waits for it)."""
    found: list[CommandOutcomeV1] = []

    async def published() -> bool:
        info = await js.stream_info(
            topo.stream(EVENTS).name, subjects_filter=topo.subjects.outcomes_all
        )
        for subject in info.state.subjects or {}:
            payload = decode(
                (await js.get_last_msg(topo.stream(EVENTS).name, subject)).data or b""
            ).data
            if isinstance(payload, CommandOutcomeV1) and payload.command_id == command_id:
                found.append(payload)
                return True
        return False

    await eventually(published, within=20, message=f"outcome of {command_id}")
    return found[0]


async def all_outcomes(js: JetStreamContext, topo: Topology) -> dict[str, CommandOutcomeV1]:
    """Every outcome event in EVENTS, by command id."""
    stream = topo.stream(EVENTS).name
    info = await js.stream_info(stream)
    found: dict[str, CommandOutcomeV1] = {}
    seq = info.state.first_seq
    while seq <= info.state.last_seq:
        try:
            raw = await js.get_msg(stream, seq, subject=topo.subjects.outcomes_all, next=True)
        except NotFoundError:  # no outcome after seq
            break
        payload = decode(raw.data or b"").data
        if isinstance(payload, CommandOutcomeV1):
            found[payload.command_id] = payload
        seq = (raw.seq or seq) + 1
    return found


async def audit_of(js: JetStreamContext, topo: Topology, command_id: str) -> AuditRecordV1:
    for action in ("command_executed", "command_refused"):
        try:
            raw = await js.get_last_msg(
                topo.stream(AUDIT).name, topo.subjects.audit("gateway", action)
            )
        except NotFoundError:  # none of that action yet
            continue
        record = decode(raw.data or b"").data
        if (
            isinstance(record, AuditRecordV1)
            and (record.details or {}).get("command_id") == command_id
        ):
            return record
    raise AssertionError(f"no audit record for {command_id}")


async def dead_call(
    js: JetStreamContext, topo: Topology, ha_client: HaClient, hasim: Simulator, cmd: CallServiceV1
) -> str:
    """A gateway that claimed ``cmd`` and died after its call reached Home Assistant (made with
    the gateway's token, after the claim); the context id of the change the call made."""
    await dead_claim(js, topo, cmd.command_id)
    (entity,) = cmd.target.entity_id
    await ha_client.command("call_service", domain=cmd.domain, service=cmd.service,
                            target={"entity_id": [entity]})  # fmt: skip
    return hasim.states[entity].context.id


async def dead_claim(js: JetStreamContext, topo: Topology, command_id: str) -> Claim:
    """The pending claim a gateway killed while calling Home Assistant leaves in the ledger."""
    ledger = await js.key_value(topo.bucket(IDEMPOTENCY).bucket)
    claim = await KvIdempotencyStore(ledger, owner="gateway-dead", singleton=True).claim(
        f"cmd.{command_id}"
    )
    assert isinstance(claim, Claim)
    return claim


async def test_a_command_older_than_one_executed_on_its_entity_is_superseded(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "on")
    newer = command("turn_off", (light,))
    await send(js, topo, newer)
    assert (await outcome_of(js, topo, newer.command_id)).outcome == "succeeded"

    stale = command("turn_on", (light,))  # created a minute before the one already executed
    await send(js, topo, stale, created=datetime.now(UTC) - timedelta(minutes=1))
    outcome = await outcome_of(js, topo, stale.command_id)
    assert (outcome.outcome, outcome.error_code) == ("expired", "superseded")
    assert hasim.calls[("light", "turn_on", light)] == 0
    assert hasim.states[light].state == "off"
    refused = await audit_of(js, topo, stale.command_id)
    assert refused.action == "command.refused"
    assert newer.command_id in refused.reason

    counted = command("turn_on", (light,), backlog="all")  # a rule that wants every command
    await send(js, topo, counted, created=datetime.now(UTC) - timedelta(minutes=1))
    assert (await outcome_of(js, topo, counted.command_id)).outcome == "succeeded"
    assert hasim.calls[("light", "turn_on", light)] == 1


async def test_a_late_run_is_not_executed_once_its_trigger_entity_changed_again(
    gateway: Gateway,
    hasim: Simulator,
    js: JetStreamContext,
    topology_applied: Topology,
    changed_twice: ChangedTwice,
) -> None:
    # A backlog after a nats-server restart: the engine met "guest mode on" late and sent
    # turn_on; Home Assistant turned guest mode off meanwhile (its own run follows). The
    # turn_on is stale: running it would make the mirror flap.
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    turned_on, turned_off = await changed_twice(gateway)
    stale = command("turn_on", (light,)).model_copy(update={"late_trigger": turned_on})
    await send(js, topo, stale)
    outcome = await outcome_of(js, topo, stale.command_id)
    assert (outcome.outcome, outcome.error_code) == ("expired", "superseded")
    assert hasim.calls[("light", "turn_on", light)] == 0
    refused = await audit_of(js, topo, stale.command_id)
    assert refused.action == "command.refused"
    assert f"{turned_on.entity_id} changed again" in refused.reason

    # The run of the latest change, even late, runs; so does a late `all` run.
    current = command("turn_off", (light,)).model_copy(update={"late_trigger": turned_off})
    await send(js, topo, current)
    assert (await outcome_of(js, topo, current.command_id)).outcome == "succeeded"
    counted = command("turn_on", (light,), backlog="all").model_copy(
        update={"late_trigger": turned_on}
    )
    await send(js, topo, counted)
    assert (await outcome_of(js, topo, counted.command_id)).outcome == "succeeded"
    assert hasim.calls[("light", "turn_on", light)] == 1


async def test_a_late_command_with_a_newer_one_waiting_for_its_entity_is_not_executed(
    gateway: Gateway, hasim: Simulator, topology_applied: Topology
) -> None:
    # A command held up (here: behind another that holds the light's turn, as one waiting
    # out a NATS outage would) gets its turn late, while a newer command for the same light
    # already waits: running both would flip the light twice in a row.
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    order = TargetOrder()
    handler = chain(command_handler(topo.subjects, gateway.bridge.connection, order),
                    in_turn(order))  # fmt: skip
    now = datetime.now(UTC)
    stale, newer = command("turn_on", (light,)), command("turn_off", (light,))
    release = asyncio.Event()

    async def blocker() -> None:
        async with order.turn([light], now - timedelta(minutes=2)):
            await release.wait()

    held = asyncio.create_task(blocker())
    await asyncio.sleep(0)

    async def handle(cmd: CallServiceV1, created: datetime) -> Sequence[Outbound]:
        return await handler(*delivered(cmd, created))

    first = asyncio.create_task(handle(stale, now - timedelta(minutes=1)))
    second = asyncio.create_task(handle(newer, now - timedelta(seconds=59)))
    await eventually(lambda: order.waiting_newer([light], now - timedelta(minutes=1)) is not None)
    release.set()
    await held
    refused = outcome_in(await first)
    assert (refused.outcome, refused.error_code) == ("expired", "superseded")
    assert outcome_in(await second).outcome == "succeeded"
    assert hasim.calls[("light", "turn_on", light)] == 0
    assert hasim.calls[("light", "turn_off", light)] == 1


def delivered(cmd: CallServiceV1, created: datetime) -> tuple[Envelope[Payload], Delivery]:
    envelope = make_envelope(cmd, source="ruby/engine", message_id=cmd.command_id, time=created)
    subject = f"ruby.cmd.ha.{cmd.domain}.{cmd.service}"
    return envelope, Delivery(subject, "COMMANDS", GATEWAY, 1, 1, {}, created)


def outcome_in(messages: Sequence[Outbound]) -> CommandOutcomeV1:
    (outcome,) = [
        m.envelope.data for m in messages if isinstance(m.envelope.data, CommandOutcomeV1)
    ]
    return outcome


async def test_a_burst_of_commands_on_one_entity_ends_in_the_last_ones_state(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    burst = [command("turn_on" if i % 2 else "turn_off", (light,)) for i in range(30)]
    for cmd in burst:  # published back to back: the gateway holds them all in flight at once
        await send(js, topo, cmd)
    await eventually(lambda: consumers_idle(js, topo, GATEWAY), within=30, message="all run")
    assert hasim.states[light].state == "on"  # the last command's, never an earlier one's
    found = await all_outcomes(js, topo)
    outcomes = [found[cmd.command_id] for cmd in burst]
    assert outcomes[-1].outcome == "succeeded"
    executed = hasim.calls[("light", "turn_on", light)] + hasim.calls[("light", "turn_off", light)]
    assert executed == sum(o.outcome == "succeeded" for o in outcomes)
    # Each ran, or (its turn came late, a newer one already waiting) was superseded.
    assert {(o.outcome, o.error_code) for o in outcomes[:-1]} <= {
        ("succeeded", None),
        ("expired", "superseded"),
    }


async def test_a_call_found_in_home_assistants_state_after_a_crash_is_not_made_again(
    gateway: Gateway,
    hasim: Simulator,
    ha_client: HaClient,
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    cmd = command("turn_on", (light,))
    context_id = await dead_call(js, topo, ha_client, hasim, cmd)
    await send(js, topo, cmd)
    outcome = await outcome_of(js, topo, cmd.command_id)
    assert outcome.outcome == "succeeded"
    assert outcome.ha_context_id == context_id
    assert hasim.calls[("light", "turn_on", light)] == 1  # the dead gateway's, not a second
    record = await audit_of(js, topo, cmd.command_id)
    assert record.action == "command.executed"
    assert "before the gateway's crash" in record.reason


async def test_a_dead_gateways_call_is_recorded_executed_even_if_it_is_stale_by_now(
    gateway: Gateway,
    hasim: Simulator,
    ha_client: HaClient,
    js: JetStreamContext,
    topology_applied: Topology,
    changed_twice: ChangedTwice,
) -> None:
    # Found by make chaos: a gateway killed right after HA ran its call; the redelivered
    # command was late by then and was refused as superseded, so the audit said "refused"
    # about a call HA had executed. What happened comes first; staleness only decides calls
    # not made yet.
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    superseded, _ = await changed_twice(gateway)
    cmd = command("turn_on", (light,)).model_copy(update={"late_trigger": superseded})
    context_id = await dead_call(js, topo, ha_client, hasim, cmd)
    await send(js, topo, cmd)
    outcome = await outcome_of(js, topo, cmd.command_id)
    assert (outcome.outcome, outcome.ha_context_id) == ("succeeded", context_id)
    assert hasim.calls[("light", "turn_on", light)] == 1
    record = await audit_of(js, topo, cmd.command_id)
    assert record.action == "command.executed"
    assert "before the gateway's crash" in record.reason


async def test_a_dead_gateways_claim_whose_call_left_no_trace_is_called_once(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    cmd = command("turn_on", (light,))
    await dead_claim(js, topo, cmd.command_id)  # killed before its call reached HA
    await send(js, topo, cmd)
    assert (await outcome_of(js, topo, cmd.command_id)).outcome == "succeeded"
    assert hasim.calls[("light", "turn_on", light)] == 1
    assert hasim.states[light].state == "on"


async def test_a_dead_gateways_claim_without_target_entities_is_not_repeated(
    gateway: Gateway, hasim: Simulator, js: JetStreamContext, topology_applied: Topology
) -> None:
    topo = topology_applied
    cmd = command("turn_on", ())
    await dead_claim(js, topo, cmd.command_id)
    await send(js, topo, cmd)
    outcome = await outcome_of(js, topo, cmd.command_id)
    assert (outcome.outcome, outcome.error_code) == ("failed", "outcome_unknown")
    assert sum(n for (domain, _, _), n in hasim.calls.items() if domain == "light") == 0
    assert (await audit_of(js, topo, cmd.command_id)).action == "command.refused"


async def test_a_gateway_killed_between_home_assistants_call_and_its_ledger_calls_once(
    secure_installation: Installation, hasim: Simulator, tmp_path: Path
) -> None:
    inst = secure_installation
    inst.store_ha_token(hasim.token)
    proxy = HoldingProxy("127.0.0.1", hasim.port)
    await proxy.start()
    first, second = successive_gateways(inst.environ(), proxy.url, tmp_path)
    nc = await inst.connect("operator")
    js = nc.jetstream()
    topo = inst.topology
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    cmd = command("turn_on", (light,))
    try:
        await first.start()
        await eventually(lambda: "home assistant connected" in first.events(), within=60)
        proxy.hold()  # HA executes what it gets; the gateway hears nothing back
        engine = await inst.connect("engine")
        publisher = Publisher(engine)
        envelope = make_envelope(cmd, source="ruby/engine", message_id=cmd.command_id)
        await publisher.publish([Outbound(topo.subjects.command("light", "turn_on"), envelope)])
        await publisher.close()
        await engine.drain()
        await eventually(lambda: hasim.calls[("light", "turn_on", light)] == 1, within=20)
        await first.kill9()  # after HA's call, before the ledger's complete
        proxy.release()
        ledger = await js.key_value(topo.bucket(IDEMPOTENCY).bucket)
        left = json.loads((await ledger.get(f"cmd.{cmd.command_id}")).value or b"{}")
        assert left["state"] == "pending"  # the window this test is about

        await second.start()
        outcome = await outcome_of(js, topo, cmd.command_id)
        assert outcome.outcome == "succeeded"
        assert outcome.ha_context_id == hasim.states[light].context.id
        await eventually(lambda: consumers_idle(js, topo, GATEWAY), within=20)
        assert hasim.calls[("light", "turn_on", light)] == 1
        assert "command claimed by a dead gateway" in second.events()
    finally:
        for process in (first, second):
            if process.process is not None and process.process.returncode is None:
                await process.stop()
        await nc.drain()
        await proxy.close()
