"""``ha.fire_event.v1``: an event fired on Home Assistant's bus once per command id.

Through the same ledger as service calls: delivered twice, fired once; a claim left by a
gateway that died is not fired again (Home Assistant keeps no record of its bus); stale ones
are refused like calls. The process test kills a real gateway with kill -9 after Home
Assistant fired the event and before the ledger recorded it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ruby_ctl.testing import Installation
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import (
    ChangedTwice,
    Gateway,
    HoldingProxy,
    running_gateway,
    successive_gateways,
)
from ruby_hasim.model import Event
from ruby_hasim.server import Simulator
from ruby_natsx.handler import Outbound
from ruby_natsx.idempotency import Claim, KvIdempotencyStore
from ruby_natsx.publish import Publisher
from ruby_natsx.testing import consumers_idle, eventually
from ruby_natsx.topology import AUDIT, EVENTS, GATEWAY, IDEMPOTENCY, Topology
from ruby_runtime.secret import Secret
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.commands import (
    FIRE_EVENT_DOMAIN,
    FIRE_EVENT_SERVICE,
    CommandOutcomeV1,
    FireEventV1,
)
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.registry import decode, encode

TYPE = "custom.doorbell_rang"  # a dot: Home Assistant's event types need not be tokens


@pytest.fixture
def fired(hasim: Simulator) -> Iterator[list[Event]]:
    """Every event of `TYPE` fired on the simulator's bus."""
    seen: list[Event] = []
    stop = hasim.home.listen(lambda event: seen.append(event) if event.event_type == TYPE else None)
    yield seen
    stop()


@pytest_asyncio.fixture
async def gateway(
    nc: Client, topology_applied: Topology, hasim: Simulator
) -> AsyncIterator[Gateway]:
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"),
                          ping_interval=0.5, ping_timeout=0.5, backoff_initial=0.05,
                          backoff_max=0.2)  # fmt: skip
    async with running_gateway(
        nc, topology_applied.subjects, config, owner="gateway-now", backoff=(0.1,) * 4
    ) as gateway:
        yield gateway


def fire(*, deadline: timedelta = timedelta(seconds=60), **fields: object) -> FireEventV1:
    return FireEventV1.model_validate(
        {
            "command_id": new_id(),
            "event_type": TYPE,
            "event_data": {"where": "front"},
            "deadline": datetime.now(UTC) + deadline,
            **fields,
        }
    )


async def send(js: JetStreamContext, topo: Topology, cmd: FireEventV1, msg_id: str) -> None:
    envelope = make_envelope(cmd, source="ruby/engine", message_id=msg_id)
    subject = topo.subjects.command(FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE)
    await js.publish(subject, encode(envelope), headers={"Nats-Msg-Id": msg_id})


async def outcome(js: JetStreamContext, topo: Topology, cmd: FireEventV1) -> CommandOutcomeV1:
    """The outcome of ``cmd`` (waits for it): the one outcome subject it can be on."""
    found: list[CommandOutcomeV1] = []

    async def published() -> bool:
        for verdict in ("succeeded", "failed", "expired", "rejected"):
            subject = topo.subjects.cmd_outcome(verdict, FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE)
            try:
                raw = await js.get_last_msg(topo.stream(EVENTS).name, subject)
            except NotFoundError:
                continue
            payload = decode(raw.data or b"").data
            if isinstance(payload, CommandOutcomeV1) and payload.command_id == cmd.command_id:
                found.append(payload)
                return True
        return False

    await eventually(published, within=20, message=f"outcome of {cmd.command_id}")
    return found[0]


async def audit(js: JetStreamContext, topo: Topology, action: str) -> AuditRecordV1:
    raw = await js.get_last_msg(topo.stream(AUDIT).name, topo.subjects.audit("gateway", action))
    record = decode(raw.data or b"").data
    assert isinstance(record, AuditRecordV1)
    return record


async def test_an_event_delivered_twice_is_fired_once_and_audited(
    gateway: Gateway,
    fired: list[Event],
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    topo = topology_applied
    cmd = fire()
    await send(js, topo, cmd, "first-delivery")
    await send(js, topo, cmd, "second-delivery")  # another message, the same command id
    result = await outcome(js, topo, cmd)
    await eventually(lambda: consumers_idle(js, topo, GATEWAY), within=20, message="both done")
    [event] = fired
    assert event.data == {"where": "front"}
    assert (result.outcome, result.domain, result.service) == (
        "succeeded",
        FIRE_EVENT_DOMAIN,
        FIRE_EVENT_SERVICE,
    )
    assert result.ha_context_id == event.context.id  # Home Assistant's answer to fire_event
    record = await audit(js, topo, "command_executed")
    assert record.target == f"{FIRE_EVENT_DOMAIN}.{FIRE_EVENT_SERVICE}"
    assert (record.details or {})["event_type"] == TYPE
    assert record.reason == f"home assistant fired {TYPE}"


async def test_an_event_past_its_deadline_or_started_by_a_superseded_change_is_not_fired(
    gateway: Gateway,
    fired: list[Event],
    js: JetStreamContext,
    topology_applied: Topology,
    changed_twice: ChangedTwice,
) -> None:
    topo = topology_applied
    late = fire(deadline=timedelta(seconds=-1))
    await send(js, topo, late, late.command_id)
    assert (await outcome(js, topo, late)).outcome == "expired"

    # The run's change reached the engine late, and Home Assistant changed the entity since.
    trigger, _ = await changed_twice(gateway)
    stale = fire(late_trigger=trigger)
    await send(js, topo, stale, stale.command_id)
    refused = await outcome(js, topo, stale)
    assert (refused.outcome, refused.error_code) == ("expired", "superseded")
    counted = fire(late_trigger=trigger, backlog="all")  # a rule that wants every run
    await send(js, topo, counted, counted.command_id)
    assert (await outcome(js, topo, counted)).outcome == "succeeded"
    assert len(fired) == 1


async def test_a_dead_gateways_claim_on_an_event_is_not_fired_again(
    gateway: Gateway,
    fired: list[Event],
    js: JetStreamContext,
    topology_applied: Topology,
) -> None:
    topo = topology_applied
    cmd = fire()
    ledger = await js.key_value(topo.bucket(IDEMPOTENCY).bucket)
    claim = await KvIdempotencyStore(ledger, owner="gateway-dead", singleton=True).claim(
        f"cmd.{cmd.command_id}"
    )
    assert isinstance(claim, Claim)  # as a gateway killed while firing leaves it
    await send(js, topo, cmd, cmd.command_id)
    result = await outcome(js, topo, cmd)
    assert (result.outcome, result.error_code) == ("failed", "outcome_unknown")
    assert fired == []  # at most once: it may have been fired by the dead gateway
    record = await audit(js, topo, "command_refused")
    assert "keeps no record of the events it fired" in record.reason


async def test_a_gateway_killed_after_home_assistant_fired_the_event_fires_it_once(
    secure_installation: Installation, hasim: Simulator, fired: list[Event], tmp_path: Path
) -> None:
    inst = secure_installation
    inst.store_ha_token(hasim.token)
    proxy = HoldingProxy("127.0.0.1", hasim.port)
    await proxy.start()
    first, second = successive_gateways(inst.environ(), proxy.url, tmp_path)
    nc = await inst.connect("operator")
    js = nc.jetstream()
    topo = inst.topology
    cmd = fire()
    try:
        await first.start()
        await eventually(lambda: "home assistant connected" in first.events(), within=60)
        proxy.hold()  # HA fires what it gets; the gateway hears nothing back
        engine = await inst.connect("engine")  # the engine's identity may send it: no new grant
        publisher = Publisher(engine)
        envelope = make_envelope(cmd, source="ruby/engine", message_id=cmd.command_id)
        subject = topo.subjects.command(FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE)
        await publisher.publish([Outbound(subject, envelope)])
        await publisher.close()
        await engine.drain()
        await eventually(lambda: len(fired) == 1, within=20, message="HA fired the event")
        await first.kill9()  # after HA fired it, before the ledger's complete
        proxy.release()
        ledger = await js.key_value(topo.bucket(IDEMPOTENCY).bucket)
        left = json.loads((await ledger.get(f"cmd.{cmd.command_id}")).value or b"{}")
        assert left["state"] == "pending"  # the window this test is about

        await second.start()
        result = await outcome(js, topo, cmd)
        assert (result.outcome, result.error_code) == ("failed", "outcome_unknown")
        await eventually(lambda: consumers_idle(js, topo, GATEWAY), within=20)
        assert len(fired) == 1
        assert "command claimed by a dead gateway" in second.events()
    finally:
        for process in (first, second):
            if process.process is not None and process.process.returncode is None:
                await process.stop()
        await nc.drain()
        await proxy.close()
