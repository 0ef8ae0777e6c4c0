"""The sink answers the audit API over request/reply, as its own identity, on a secured
nats-server (ADR-0036): records published to AUDIT by the services that own them are queried,
a light's chain of causes is followed back through the store and EVENTS, the chain verifies,
and a tampered store is reported broken where it was changed. A request that is not the
contract gets an error naming the field, and the sink goes on consuming and answering."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client

from ruby_audit_sink.service import ensure_consumer
from ruby_audit_sink.testing import running_sink
from ruby_auditstore import AuditStore
from ruby_ctl.testing import Installation
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.testing import eventually
from ruby_natsx.topology import AUDIT_SINK, ENGINE, GATEWAY
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.audit_api import (
    AuditApiErrorV1,
    AuditChainV1,
    AuditQueryV1,
    AuditRecordsV1,
    AuditVerifiedV1,
    AuditVerifyV1,
    AuditWhyV1,
)
from ruby_schemas.base import Payload
from ruby_schemas.envelope import make_envelope
from ruby_schemas.ha_events import EntityState, StateChangedV1
from ruby_schemas.registry import decode, encode


@dataclass
class Trail:
    inst: Installation
    gateway: Client
    db: Path
    light: str
    motion: str
    context: str
    trigger: str
    command: str

    async def ask(self, verb: str, payload: Payload | bytes) -> Payload:
        data = payload if isinstance(payload, bytes) else encode(
            make_envelope(payload, source="ruby/gateway")
        )  # fmt: skip
        reply = await self.gateway.request(self.inst.subjects.api("audit", verb), data, timeout=10)
        return decode(reply.data).data


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    with AuditStore(db, readonly=True) as store:
        return store.count()


@pytest_asyncio.fixture
async def trail(secure_installation: Installation, tmp_path: Path) -> AsyncIterator[Trail]:
    """A motion turned a light on through a rule: the state change in EVENTS (published by the
    gateway), the rule run (the engine's record), the command (the gateway's), all in AUDIT;
    the sink running as itself and storing them."""
    inst = secure_installation
    s = inst.subjects
    gateway, engine = await inst.connect(GATEWAY), await inst.connect(ENGINE)
    sink_nc = await inst.connect(AUDIT_SINK)
    tag = uuid.uuid4().hex[:8]
    light, motion = f"light.hall_{tag}", f"binary_sensor.motion_{tag}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    new = EntityState(state="on", last_changed=at, last_updated=at)
    old = EntityState(state="off", last_changed=at, last_updated=at)
    trigger = f"ha.{motion}.{at.isoformat()}"
    change = StateChangedV1(
        entity_id=motion, old_state=old, new_state=new, context_id=f"person-{tag}"
    )
    envelope = make_envelope(change, source="ruby/gateway", message_id=trigger)
    await gateway.jetstream().publish(s.ha_state(motion), encode(envelope))
    command, context = f"cmd-{tag}", f"01J{tag}LIGHT"
    fired = audit_record(
        s, service=ENGINE, action="rule.fired", target="rule:hall_light", cause=envelope,
        details={"rule_version": "v1", "run_id": f"run-{tag}", "trigger_event_id": trigger,
                 "command_ids": [command]},
    )  # fmt: skip
    executed = audit_record(
        s, service=GATEWAY, action="command.executed", target="light.turn_on",
        details={"command_id": command, "ha_context_id": context},
    )  # fmt: skip
    refused = audit_record(
        s, service=GATEWAY, action="api.refused", target="GET /api/v1/states",
        outcome=AuditOutcome.DENIED, reason="missing",
    )  # fmt: skip
    await publish_records(engine, [fired])
    await publish_records(gateway, [executed, refused])
    db = tmp_path / "audit.db"
    await ensure_consumer(sink_nc, s)
    try:
        async with running_sink(sink_nc, s, db):
            await eventually(lambda: stored(db) >= 3, message="the sink stored the records")
            yield Trail(inst, gateway, db, light, motion, context, trigger, command)
    finally:
        for nc in (gateway, engine, sink_nc):
            await nc.close()


async def test_the_sink_answers_query_why_and_verify(trail: Trail) -> None:
    everything = await trail.ask("query", AuditQueryV1())
    assert isinstance(everything, AuditRecordsV1)
    assert [r.record.action for r in everything.records][-3:] == [
        "rule.fired", "command.executed", "api.refused",
    ]  # fmt: skip
    assert [r.seq for r in everything.records] == sorted(r.seq for r in everything.records)
    assert not everything.truncated

    commands = await trail.ask("query", AuditQueryV1(action="command.*", target="light.turn_on"))
    assert isinstance(commands, AuditRecordsV1)
    assert [r.record.details for r in commands.records] == [
        {"command_id": trail.command, "ha_context_id": trail.context}
    ]
    newest = await trail.ask("query", AuditQueryV1(limit=1))
    assert isinstance(newest, AuditRecordsV1)
    assert [r.record.action for r in newest.records] == ["api.refused"]
    assert newest.truncated
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await trail.ask("query", AuditQueryV1(since=later)) == AuditRecordsV1(
        records=(), truncated=False
    )

    chain = await trail.ask("why", AuditWhyV1(entity_id=trail.light, context_id=trail.context))
    assert isinstance(chain, AuditChainV1)
    assert (chain.caused_by_ruby_core, chain.complete, chain.end) == (True, True, None)
    assert [link.link for link in chain.chain] == ["state", "command", "rule", "state"]
    motion = chain.chain[3]
    assert motion.link == "state"
    assert (motion.entity_id, motion.old_state, motion.state, motion.event_id) == (
        trail.motion, "off", "on", trail.trigger,
    )  # fmt: skip
    nobody = await trail.ask("why", AuditWhyV1(entity_id=trail.light, context_id="by-hand"))
    assert isinstance(nobody, AuditChainV1)
    assert (nobody.caused_by_ruby_core, nobody.end or "") == (False, nobody.end)
    assert (nobody.end or "").startswith("not changed by Ruby Core")

    verified = await trail.ask("verify", AuditVerifyV1())
    assert isinstance(verified, AuditVerifiedV1)
    assert verified.ok
    assert verified.broken is None
    assert verified.count == stored(trail.db)


async def test_a_tampered_store_is_reported_broken_where_it_was_changed(trail: Trail) -> None:
    with AuditStore(trail.db, readonly=True) as store:
        first = next(store.query(action="command.executed"))
    db = sqlite3.connect(trail.db)
    with db:  # what someone with the file does: drop the guard, edit a row's record
        db.execute("DROP TRIGGER audit_no_update")
        db.execute(
            "UPDATE audit_records SET record = replace(record, 'light.turn_on', 'light.turn_off')"
            " WHERE seq = ?",
            (first.seq,),
        )
    db.close()
    verified = await trail.ask("verify", AuditVerifyV1())
    assert isinstance(verified, AuditVerifiedV1)
    assert not verified.ok
    assert verified.broken is not None
    assert verified.broken.seq == first.seq
    assert verified.broken.record_id == first.record.record_id
    assert "edited" in verified.broken.reason


async def test_a_bad_request_gets_an_error_naming_the_field_and_the_sink_goes_on(
    trail: Trail,
) -> None:
    good = encode(make_envelope(AuditQueryV1(), source="ruby/gateway"))
    too_many = good.replace(b'"limit":100', b'"limit":5000')
    error = await trail.ask("query", too_many)
    assert isinstance(error, AuditApiErrorV1)
    assert (error.code, [e.field for e in error.errors]) == ("invalid-request", ["limit"])

    error = await trail.ask("query", b"not json at all")
    assert isinstance(error, AuditApiErrorV1)
    assert error.code == "invalid-request"

    error = await trail.ask("why", good)  # a query sent to why
    assert isinstance(error, AuditApiErrorV1)
    assert [e.field for e in error.errors] == ["type"]

    # Still consuming and answering.
    before = stored(trail.db)
    await publish_records(
        trail.gateway,
        [audit_record(trail.inst.subjects, service=GATEWAY, action="api.refused", target="x")],
    )
    await eventually(lambda: stored(trail.db) == before + 1, message="the sink still stores")
    answer = await trail.ask("verify", AuditVerifyV1())
    assert isinstance(answer, AuditVerifiedV1)
    assert answer.ok
