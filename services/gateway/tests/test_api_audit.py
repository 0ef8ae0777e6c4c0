"""The audit trail through the real Traefik, answered by the real audit sink over
request/reply (issue 16, ADR-0036)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp

from ruby_auditstore import AuditStore
from ruby_ctl.testing import Installation
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.testing import eventually
from ruby_natsx.topology import (
    GATEWAY,
)

if TYPE_CHECKING:
    from .conftest import Stack


async def test_the_audit_trail_through_the_edge_as_the_audit_sink_answers_it(
    stack: Stack, secure_installation: Installation
) -> None:
    """The hall light's chain of causes, the records behind it and the chain's verification,
    asked of the audit sink over request/reply by the gateway's routes; bad parameters are
    problems naming them, before anything is asked; a sink that is down is a 503."""
    inst = secure_installation
    s = inst.subjects
    engine = await inst.connect("engine")
    gateway = await inst.connect(GATEWAY)
    command = "cmd-hall-1"
    try:  # a time trigger fired a rule, whose command turned the hall light on (its context)
        await publish_records(engine, [audit_record(
            s, service="engine", action="rule.fired", target="rule:hall_at_dusk",
            details={"rule_version": "v1", "run_id": "r1", "trigger_event_id": "at.dusk.1",
                     "command_ids": [command]},
        )])  # fmt: skip
        await publish_records(gateway, [audit_record(
            s, service=GATEWAY, action="command.executed", target="light.turn_on",
            details={"command_id": command, "ha_context_id": stack.hall.context_id},
        )])  # fmt: skip
    finally:
        await engine.drain()
        await gateway.drain()

    def stored() -> int:
        with AuditStore(stack.audit_db, readonly=True) as store:
            return len(list(store.query(action="command.executed", target="light.turn_on")))

    await eventually(lambda: stored() == 1, message="the sink stored the command")
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, Any]:
            return await stack.get(http, path)

        status, found = await get("/audit?action=command.*&entity=light.turn_on&since=1h")
        assert status == 200, found
        assert [r["record"]["details"]["command_id"] for r in found["records"]] == [command]
        assert found["truncated"] is False
        status, found = await get("/audit?limit=1")
        assert (status, len(found["records"]), found["truncated"]) == (200, 1, True)

        status, why = await get("/audit/why/light.hall")
        assert status == 200, why
        assert [link["link"] for link in why["chain"]] == ["state", "command", "rule", "trigger"]
        assert (why["state"], why["context_id"]) == ("on", stack.hall.context_id)
        assert why["chain"][2]["rule_id"] == "hall_at_dusk"
        assert why["chain"][3] == {"link": "trigger", "kind": "time", "event_id": "at.dusk.1"}
        status, by_hand = await get("/audit/why/light.other?context=nobody-did-this")
        assert (status, by_hand["caused_by_ruby_core"]) == (200, False)

        status, verified = await get("/audit/verify")
        assert status == 200, verified
        assert verified["ok"] is True
        assert verified["count"] >= 2

        for path, field in [
            ("/audit?since=yesterday", "since"),
            ("/audit?until=2026-12-04T18:00", "until"),  # no offset: which zone?
            ("/audit?limit=0", "limit"),
            ("/audit?limit=5000", "limit"),
            ("/audit?limit=many", "limit"),
            ("/audit?action=a%20b", "action"),
            ("/audit?entity=light.*.x*", "entity"),
            ("/audit?colour=red", "colour"),
            ("/audit?action=a&action=b", "action"),
            ("/audit/why/Light%20Hall", "entity_id"),
            ("/audit/why/light.hall?context=has%20space", "context"),
            ("/audit/verify?deep=1", "deep"),
        ]:
            status, problem = await get(path)
            assert status == 400, (path, problem)
            assert [e["field"] for e in problem["errors"]] == [field], (path, problem)
            assert "yesterday" not in json.dumps(problem)
        status, problem = await get("/audit/why/light.nobody")
        assert (status, problem["type"]) == (404, "urn:ruby-core:problem:no-such-entity")

        await stack.sink.aclose()  # the audit sink stops: nobody answers
        for path in ("/audit", "/audit/why/light.hall", "/audit/verify"):
            status, problem = await get(path)
            assert status == 503, (path, problem)
            assert problem["type"] == "urn:ruby-core:problem:audit-sink-unavailable"
            assert "the audit sink is not answering" in problem["detail"]
