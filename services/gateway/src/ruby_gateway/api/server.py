"""The API listener: HTTPS on 127.0.0.1, serving Traefik alone (ADR-0020).

TLS with the gateway API's certificate; a client certificate is asked for and, when one is
given, verified against the installation's CA. `edge.edge_only` then refuses (401) every
request whose connection did not present Traefik's. The handlers are named by the route table
(`routes.ROUTES`); a route of the table without a handler is a start-up error.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from nats.aio.client import Client
from nats.js.kv import KeyValue

from ruby_gateway.api.audit import Audit
from ruby_gateway.api.commands import Commands
from ruby_gateway.api.dlq import Dlq
from ruby_gateway.api.edge import EdgeAuth, Handler, edge_only
from ruby_gateway.api.openapi import document
from ruby_gateway.api.problems import problem
from ruby_gateway.api.routes import ROUTES
from ruby_gateway.api.rules import Rules, check
from ruby_gateway.api.stream import SEND_TIMEOUT, EventLog, EventStream
from ruby_gateway.api.webhooks import Webhooks
from ruby_gateway.projection import Projected, Projection
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import EVENTS, STATUS, topology
from ruby_schemas.primitives import ENTITY_ID_PATTERN

AUTH_PATH: Final = "/edge/auth"
ENTITY_ID: Final = re.compile(ENTITY_ID_PATTERN)


@dataclass(frozen=True)
class TlsFiles:
    """The API's certificate and key, and the CA whose client certificates it accepts."""

    cert: Path
    key: Path
    ca: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        context.verify_mode = ssl.CERT_OPTIONAL  # none: served a 401; a bad one: no handshake
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def shown(entity_id: str, projected: Projected) -> dict[str, object]:
    return {
        "entity_id": entity_id,
        "state": projected.state,
        "attributes": dict(projected.attributes),
        "last_changed": projected.last_changed.isoformat(),
        "last_updated": projected.last_updated.isoformat(),
        "context_id": projected.context_id,
    }


class Handlers:
    """The route handlers, by route name."""

    def __init__(
        self,
        projection: Callable[[], Projection],
        commands: Commands,
        rules: Rules,
        events: EventStream,
        dlq: Dlq,
        audit: Audit,
    ) -> None:
        self._projection = projection
        self.commands, self.dlq = commands, dlq
        self.events = events
        self.stream = events.stream
        self.call_service = commands.call_service
        self.fire_event = commands.fire_event
        self.list_rules = rules.list_rules
        self.get_rule = rules.get_rule
        self.rule_traces = rules.rule_traces
        self.check_rules = check
        self.command_status = commands.command_status
        self.list_dlq = dlq.list_dlq
        self.get_dlq = dlq.get_dlq
        self.replay_dlq = dlq.replay_dlq
        self.delete_dlq = dlq.delete_dlq
        self.call_webhook = Webhooks(commands.publisher, commands.subjects).call
        self.audit_query = audit.audit_query
        self.audit_why = audit.audit_why
        self.audit_verify = audit.audit_verify

    @classmethod
    def on(
        cls,
        nc: Client,
        subjects: Subjects,
        projection: Callable[[], Projection],
        ledger: KeyValue,
        *,
        send_timeout: float = SEND_TIMEOUT,
    ) -> Handlers:
        """Every handler, on the gateway's connection: the one way the service, the tests and
        the real-HA suite build them."""
        topo = topology(subjects)
        commands = Commands(nc, subjects, ledger)
        return cls(
            projection,
            commands,
            Rules(nc, topo.bucket(STATUS)),
            EventStream(
                EventLog(nc, subjects, topo.stream(EVENTS).name), send_timeout=send_timeout
            ),
            Dlq(nc, subjects, commands.publisher),
            Audit(nc, subjects, projection),
        )

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(document())

    async def list_states(self, _request: web.Request) -> web.Response:
        entities = self._projection().snapshot()
        return web.json_response([shown(e, entities[e]) for e in sorted(entities)])

    async def get_state(self, request: web.Request) -> web.Response:
        entity_id = request.match_info["entity_id"]
        if not ENTITY_ID.fullmatch(entity_id):
            return problem(
                400,
                "invalid-entity-id",
                "an entity id is <domain>.<object id>, lower-case letters, digits and '_'",
                errors=[{"field": "entity_id", "message": "not an entity id"}],
            )
        projected = self._projection().get(entity_id)
        if projected is None:
            return problem(404, "no-such-entity", f"Home Assistant has no entity {entity_id}")
        return web.json_response(shown(entity_id, projected))


class ApiServer:
    """Serves `ROUTES` and ``/edge/auth`` on 127.0.0.1 until `close`."""

    def __init__(
        self,
        handlers: Handlers,
        edge: EdgeAuth,
        tls: TlsFiles,
        *,
        port: int,
        host: str = "127.0.0.1",
    ) -> None:
        self._handlers, self._edge, self._tls = handlers, edge, tls
        self._host, self.port = host, port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[edge_only], client_max_size=1024 * 1024)
        app.router.add_get(AUTH_PATH, self._edge.auth)
        for route in ROUTES:
            handler: Handler | None = getattr(self._handlers, route.name, None)
            if handler is None:
                raise RuntimeError(f"route {route.method} {route.full_path} has no handler")
            app.router.add_route(route.method, route.full_path, handler)
        return app

    async def start(self) -> None:
        await self._handlers.commands.start()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port, ssl_context=self._tls.context())
        await site.start()
        if self.port == 0:  # a free port was asked for: report the one bound
            self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        await self._handlers.events.close()  # closes the WebSockets: their clients reconnect
        if self._runner is not None:
            await self._runner.cleanup()
        await self._handlers.dlq.close()
        await self._handlers.commands.close()  # the one publisher, after its last user
