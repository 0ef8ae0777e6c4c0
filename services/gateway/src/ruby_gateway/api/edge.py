"""What the edge decides, on the gateway's side (ADR-0020).

- ``/edge/auth`` is Traefik's forwardAuth: it reads the token of the request Traefik holds
  (``Authorization: Bearer``), checks it (`TokenBook`) and the scope of the route
  (`routes.match`), and answers 200 with the token's name and scope, or a problem: 401 (no,
  malformed, unknown, expired or revoked token), 403 (scope), 404 (no such route, for a good
  token only). Each 401 and 403 is audited (``api.refused``: route, client address, reason,
  never the token).
- `edge_only` serves nothing to a connection without the client certificate the installation's
  CA issued to Traefik: a request straight to the gateway gets 401, whatever its route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from nats.aio.client import Client

from ruby_gateway.api.problems import problem
from ruby_gateway.api.routes import match
from ruby_gateway.api.tokens import TokenBook, Verdict
from ruby_natsx.audit import audit_record, publish_records
from ruby_natsx.subjects import Subjects
from ruby_natsx.topology import GATEWAY
from ruby_schemas.audit import AuditOutcome

log = structlog.get_logger("ruby_gateway.api.edge")

EDGE_CLIENT_CN: Final = "ruby-edge"
"""The common name of the client certificate bootstrap issues to Traefik (``ruby_ctl.pki``)."""
TOKEN_HEADER: Final = "X-Ruby-Token"  # noqa: S105 - a header name
SCOPE_HEADER: Final = "X-Ruby-Scope"

TOKEN_SUBPROTOCOL: Final = "bearer."  # noqa: S105 - a subprotocol prefix
"""A browser cannot set headers on a WebSocket: it offers ``bearer.<token>`` as a subprotocol
(beside ``ruby.v1``) instead. Never the URL: URLs land in logs and histories."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, else of a ``bearer.<token>`` WebSocket
    subprotocol, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip() or None
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        if offered.strip().startswith(TOKEN_SUBPROTOCOL):
            return offered.strip().removeprefix(TOKEN_SUBPROTOCOL) or None
    return None


def from_edge(request: web.Request) -> bool:
    """Whether the connection presented Traefik's client certificate (verified by TLS against
    the installation's CA)."""
    transport = request.transport
    cert: Any = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return False
    subject = dict(pair for rdn in cert.get("subject", ()) for pair in rdn)
    return bool(subject.get("commonName") == EDGE_CLIENT_CN)


@web.middleware
async def edge_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for anything that did not come through the edge; every error as a problem."""
    if not from_edge(request):
        return problem(
            401,
            "not-through-the-edge",
            "this listener serves only Traefik's edge; use the API's address",
        )
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404 and 405, as problems
        if exc.status < 400:
            raise
        return problem(exc.status, "http", exc.reason)


class EdgeAuth:
    """The forwardAuth endpoint and the refusals it audits."""

    def __init__(self, book: TokenBook, nc: Client, subjects: Subjects) -> None:
        self._book, self._nc, self._subjects = book, nc, subjects

    async def auth(self, request: web.Request) -> web.Response:
        method = request.headers.get("X-Forwarded-Method", "")
        path = urlsplit(request.headers.get("X-Forwarded-Uri", "")).path
        client = request.headers.get("X-Forwarded-For", "").split(",")[0].strip() or "unknown"
        verdict = self._book.check(bearer(request))
        if verdict.record is None:
            await self._refused(method, path, client, verdict)
            return problem(
                401,
                "unauthorized",
                f"a valid API token is needed ({verdict.reason} token)",
                headers={"WWW-Authenticate": 'Bearer realm="ruby-core"'},
            )
        route = match(method, path)
        if route is None:
            return problem(404, "no-such-route", f"no route {method} {path}")
        if not verdict.record.scope.covers(route.scope):
            await self._refused(method, path, client, Verdict(verdict.record, "scope"))
            return problem(
                403,
                "forbidden",
                f"{route.method} {route.full_path} needs a {route.scope.value} token; "
                f"this one is {verdict.record.scope.value}",
            )
        return web.Response(
            status=200,
            headers={TOKEN_HEADER: verdict.record.name, SCOPE_HEADER: verdict.record.scope},
        )

    async def _refused(self, method: str, path: str, client: str, verdict: Verdict) -> None:
        """Audit a refusal before it is answered (stored by JetStream: promise 9); if NATS is
        away, the refusal is answered all the same and the failure logged."""
        details: dict[str, Any] = {"client": client}
        if verdict.record is not None:
            details["token"] = verdict.record.name  # its name, never the token
        record = audit_record(
            self._subjects,
            service=GATEWAY,
            action="api.refused",
            target=f"{method} {path}"[:200],
            outcome=AuditOutcome.DENIED,
            reason=verdict.reason,
            details=details,
        )
        log.info("api request refused", route=f"{method} {path}", client=client,
                 reason=verdict.reason)  # fmt: skip
        try:
            await publish_records(self._nc, [record])
        except Exception as exc:  # the refusal stands; the loss is said
            log.error("api refusal not audited", route=f"{method} {path}", error=str(exc))  # noqa: TRY400 - the error says it; no traceback helps
