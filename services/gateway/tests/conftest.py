"""Helpers shared by the gateway's tests: the command tests' guest-mode flip, and the API's
stack (the gateway's API in this process, the real Traefik in front of it, the real audit
sink behind its /audit routes, and tokens of every kind)."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from ruby_audit_sink.service import ensure_consumer
from ruby_audit_sink.testing import running_sink
from ruby_ctl.edge import Edge
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, issue_token
from ruby_gateway.api.edge import EdgeAuth
from ruby_gateway.api.server import ApiServer, Handlers, TlsFiles
from ruby_gateway.api.stream import EventStream
from ruby_gateway.api.tokens import TokenBook
from ruby_gateway.projection import Projected, Projection
from ruby_gateway.testing import ChangedTwice, Gateway
from ruby_hasim.server import Simulator
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.testing import eventually, put_dead_letter, state_changed
from ruby_natsx.topology import (
    API_TOKENS,
    AUDIT,
    AUDIT_SINK,
    COMMANDS,
    DLQ,
    ENGINE,
    EVENTS,
    GATEWAY,
    IDEMPOTENCY,
    RULES_KEY,
    STATUS,
    TRACES_KEY,
)
from ruby_schemas.api_tokens import Scope
from ruby_schemas.commands import TriggerChange
from ruby_schemas.status import RuleRow, RulesRecord
from ruby_schemas.traces import TraceRecord

SOURCE = "input_boolean.guest_mode"


@pytest.fixture
def changed_twice(hasim: Simulator) -> ChangedTwice:
    """Turn guest mode on, then off, in the simulator, and wait until the gateway has seen the
    second change. Returns both as a run's trigger (``late_trigger``): the first one is a change
    Home Assistant has superseded since, the second its latest."""

    async def twice(gateway: Gateway) -> tuple[TriggerChange, TriggerChange]:
        turned_on = hasim.set_state(SOURCE, "on")
        turned_off = hasim.set_state(SOURCE, "off")
        await eventually(
            lambda: (
                (known := gateway.bridge.projection.get(SOURCE)) is not None
                and known.last_changed == turned_off.last_changed
            ),
            message="the gateway saw guest mode turn off",
        )
        return (
            TriggerChange(entity_id=SOURCE, last_changed=turned_on.last_changed),
            TriggerChange(entity_id=SOURCE, last_changed=turned_off.last_changed),
        )

    return twice


HALL = Projected(
    "on",
    {"friendly_name": "Hall"},
    datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
    datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
    "01JCONTEXT",
)
SEND_TIMEOUT = 2.0
"""Seconds a stalled WebSocket client of these tests has before it is cut off."""


@dataclass
class Stack:
    """Traefik in front of the gateway's API, the audit sink that answers its /audit routes,
    and tokens of every kind."""

    edge: Edge
    api_port: int
    ca: Path
    tokens: dict[str, str]
    operator: Client
    events: EventStream
    sink: contextlib.AsyncExitStack
    """Close it to stop the audit sink."""
    audit_db: Path
    inst: Installation
    hall: Projected = field(default_factory=lambda: HALL)
    """The one entity the stack's projection holds, ``light.hall``."""

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        """GET ``path`` through the edge with a read token: the status and the JSON body (an
        error must be problem details)."""
        headers = {"Authorization": f"Bearer {self.tokens['read']}"}
        url = f"{self.edge.url}{path}"
        async with http.get(url, headers=headers, ssl=self.client_ssl()) as r:
            if r.status >= 400:
                assert r.content_type == "application/problem+json"
            return r.status, await r.json(content_type=None)

    async def counts(self) -> dict[str, int]:
        """How many messages each stream holds (what a refused request must leave alone)."""
        js = self.operator.jetstream()
        streams = (EVENTS, COMMANDS, AUDIT, DLQ)
        topo = self.inst.topology
        return {s: (await js.stream_info(topo.stream(s).name)).state.messages for s in streams}

    async def audited(self, action: str) -> list[dict[str, Any]]:
        """The gateway's audit records of ``action`` (read by sequence: no consumer on AUDIT)."""
        js = self.operator.jetstream()
        stream = self.inst.topology.stream(AUDIT).name
        last = (await js.stream_info(stream)).state.last_seq
        found = []
        for seq in range(1, last + 1):
            with contextlib.suppress(NotFoundError):
                data = json.loads((await js.get_msg(stream, seq)).data or b"{}")["data"]
                if data["action"] == action and data["actor"] == f"service:{GATEWAY}":
                    found.append(data)
        return found


@pytest_asyncio.fixture
async def stack(secure_installation: Installation, tmp_path: Path) -> AsyncIterator[Stack]:
    """Its own installation: the commands it accepts stay out of other tests' streams."""
    inst = secure_installation
    operator = await inst.connect(OPERATOR)
    gateway = await inst.connect(GATEWAY)
    sink_nc = await inst.connect(AUDIT_SINK)
    sink = contextlib.AsyncExitStack()
    audit_db = tmp_path / "audit.db"
    book = TokenBook()
    api_port = free_port()
    pki = inst.state.pki
    ledger = await gateway.jetstream().key_value(inst.topology.bucket(IDEMPOTENCY).bucket)
    handlers = Handlers.on(
        gateway,
        inst.subjects,
        lambda: Projection({"light.hall": HALL}),
        ledger,
        send_timeout=SEND_TIMEOUT,
    )
    server = ApiServer(
        handlers,
        EdgeAuth(book, gateway, inst.subjects),
        TlsFiles(pki.directory / "gateway-api.pem", pki.directory / "gateway-api.key", pki.ca_cert),
        port=api_port,
    )
    edge = Edge(tmp_path / "traefik", pki, api_port, https_port=0, http_port=0)
    try:
        await book.follow(gateway, inst.topology.bucket(API_TOKENS).bucket)
        await engine_wrote_its_rules(inst)
        await dead_letters_in_the_dlq(inst)
        await ensure_consumer(sink_nc, inst.subjects)
        await sink.enter_async_context(running_sink(sink_nc, inst.subjects, audit_db))
        await server.start()
        edge.start()
        now = datetime.now(UTC)
        tokens = {
            scope.value: await issue_token(operator, inst, f"t-{scope.value}", scope)
            for scope in Scope
        }
        tokens["expired"] = await issue_token(
            operator, inst, "t-expired", Scope.ADMIN, expires=now - timedelta(seconds=1)
        )
        tokens["revoked"] = await issue_token(operator, inst, "t-revoked", Scope.ADMIN, revoked=now)
        await eventually(lambda: len(book) >= len(tokens), message="tokens followed")
        yield Stack(
            edge, api_port, pki.ca_cert, tokens, operator, handlers.events, sink, audit_db, inst
        )
    finally:
        edge.stop()
        await server.close()
        await sink.aclose()
        await book.close()
        await gateway.drain()
        await sink_nc.drain()
        await operator.drain()


async def engine_wrote_its_rules(inst: Installation) -> None:
    """The records the engine writes (as the engine): one rule, porch_light, one run."""
    engine = await inst.connect("engine")
    try:
        kv = await engine.jetstream().key_value(inst.topology.bucket(STATUS).bucket)
        now = datetime.now(UTC)
        row = RuleRow(file="porch.yaml", where="porch.yaml:2:5", version="v1", mode="single",
                      runs=1, failed=0, last_status="finished", last_run=now)  # fmt: skip
        rules = RulesRecord(updated=now, rules={"porch_light": row}, refused_files={})
        await kv.put(RULES_KEY, rules.model_dump_json().encode())
        trace = TraceRecord(rule_id="porch_light", runs=())
        await kv.put(f"{TRACES_KEY}.porch_light", trace.model_dump_json().encode())
    finally:
        await engine.drain()


LETTERS = (  # (consumer's service, stream, original subject), at DLQ sequences 1, 2, 3
    (GATEWAY, COMMANDS, "cmd.ha.light.turn_on"),
    (ENGINE, EVENTS, "evt.ha.state.light.kitchen"),
    (GATEWAY, COMMANDS, "cmd.ha.light.turn_off"),
)


async def dead_letters_in_the_dlq(inst: Installation) -> None:
    """Three dead letters, stored by the services whose consumers gave up on them."""
    for i, (service, stream, subject) in enumerate(LETTERS, start=1):
        nc = await inst.connect(service)
        try:
            seq = await put_dead_letter(
                nc,
                inst.subjects,
                stream=inst.topology.stream(stream).name,
                consumer=service,
                subject=f"{inst.subjects.prefix}.{subject}",
                stream_seq=100 + i,
                payload=state_changed("light.kitchen", "on").model_dump_json().encode(),
            )
        finally:
            await nc.drain()
        assert seq == i, "the stack's DLQ starts empty"
