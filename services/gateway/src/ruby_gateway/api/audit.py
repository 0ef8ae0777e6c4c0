"""The audit trail as the API shows it: ``GET /audit``, ``/audit/why/{entity_id}`` and
``/audit/verify`` (ADR-0036).

A service never reads another's files: the audit sink owns the store, so these handlers ask it
over NATS request/reply (``<p>.api.audit.<verb>``, the gateway's only grant there) and show
its answer. The query's parameters are checked here, before anything is asked: a bad one is a
400 problem naming it. A sink that does not answer (not running, or slower than
`API_REQUEST_TIMEOUT`) is a 503 problem; nothing is retried behind the client's back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import nats.errors
from aiohttp import web
from nats.aio.client import Client
from pydantic import ValidationError

from ruby_gateway.api.problems import problem
from ruby_gateway.projection import Projection
from ruby_natsx.subjects import AUDIT_API, Subjects
from ruby_natsx.tuning import API_REQUEST_TIMEOUT
from ruby_schemas.audit_api import (
    QUERY_LIMIT_MAX,
    AuditApiErrorV1,
    AuditQueryV1,
    AuditVerifyV1,
    AuditWhyV1,
)
from ruby_schemas.base import Payload
from ruby_schemas.envelope import make_envelope
from ruby_schemas.errors import ContractError
from ruby_schemas.primitives import ENTITY_ID_PATTERN
from ruby_schemas.registry import decode, encode, field_errors

SOURCE: Final = "ruby/gateway"
ENTITY_ID: Final = re.compile(ENTITY_ID_PATTERN)
CONTEXT_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")
DURATION: Final = re.compile(r"(\d{1,6})([smhd])")
UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PARAMETERS: Final = {  # query parameter -> the request's field
    "since": "since",
    "until": "until",
    "actor": "actor",
    "action": "action",
    "entity": "target",
    "limit": "limit",
}
FIELDS: Final = {field: parameter for parameter, field in PARAMETERS.items()}
NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class _RefusedError(Exception):
    """A query parameter is refused; the problem names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class Audit:
    """The three handlers; each asks the audit sink once and shows its answer."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        projection: Callable[[], Projection],
        *,
        timeout: float = API_REQUEST_TIMEOUT,
    ) -> None:
        self._nc, self._subjects, self._projection = nc, subjects, projection
        self._timeout = timeout

    async def audit_query(self, request: web.Request) -> web.Response:
        try:
            query = _query(request)
        except _RefusedError as exc:
            return _bad(exc.field, exc.message)
        return await self._ask("query", query)

    async def audit_why(self, request: web.Request) -> web.Response:
        entity_id = request.match_info["entity_id"]
        if not ENTITY_ID.fullmatch(entity_id):
            return _bad("entity_id", "not an entity id")
        unknown = set(request.query) - {"context"}
        if unknown:
            return _bad(sorted(unknown)[0], "not a parameter of this route")
        context = request.query.get("context")
        if context is not None:
            if not CONTEXT_ID.fullmatch(context):
                return _bad("context", "not a context id")
            return await self._ask("why", AuditWhyV1(entity_id=entity_id, context_id=context))
        projected = self._projection().get(entity_id)
        if projected is None:
            return problem(
                404,
                "no-such-entity",
                f"Home Assistant has no entity {entity_id} (pass ?context= to start from a "
                "context id)",
            )
        why = AuditWhyV1(
            entity_id=entity_id,
            context_id=projected.context_id,
            state=projected.state,
            changed_at=projected.last_changed,
        )
        return await self._ask("why", why)

    async def audit_verify(self, request: web.Request) -> web.Response:
        if request.query:
            return _bad(sorted(request.query)[0], "not a parameter of this route")
        return await self._ask("verify", AuditVerifyV1())

    async def _ask(self, verb: str, payload: Payload) -> web.Response:
        """Send the request, show the answer; 503 when the sink does not answer."""
        asked = make_envelope(payload, source=SOURCE)
        try:
            reply = await self._nc.request(
                self._subjects.api(AUDIT_API, verb), encode(asked), timeout=self._timeout
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return _unavailable("the audit sink is not answering; is it running?")
        try:
            answer = decode(reply.data).data
        except ContractError:
            return problem(502, "bad-answer", "the audit sink's answer is not its contract")
        if isinstance(answer, AuditApiErrorV1):
            if answer.code == "unavailable":
                return _unavailable(f"the audit sink cannot answer now: {answer.detail}")
            errors = [{"field": FIELDS.get(e.field, e.field), "message": e.message}
                      for e in answer.errors]  # fmt: skip
            return problem(400, "invalid-audit-request", answer.detail, errors=errors)
        return web.json_response(answer.model_dump(mode="json"))


def _query(request: web.Request) -> AuditQueryV1:
    """The query's parameters as the request's fields; `_RefusedError` naming the first bad one."""
    values: dict[str, object] = {}
    for name in request.query:
        if name not in PARAMETERS:
            raise _RefusedError(name, "not a parameter of this route")
        given = request.query.getall(name)
        if len(given) > 1:
            raise _RefusedError(name, "given more than once")
        values[PARAMETERS[name]] = given[0]
    for field in ("since", "until"):
        if field in values:
            values[field] = _moment(field, str(values[field]))
    try:
        return AuditQueryV1.model_validate(values)
    except ValidationError as exc:
        first = field_errors(exc)[0]
        field = first.path.split(".")[0]
        raise _RefusedError(FIELDS.get(field, field), _worded(field, first.message)) from None


def _worded(field: str, message: str) -> str:
    if field == "limit":
        return f"a whole number from 1 to {QUERY_LIMIT_MAX}"
    if field in ("actor", "action", "target"):
        return "an exact value, or a prefix ending with '*' (no spaces, at most 200 characters)"
    return message


def _moment(field: str, raw: str) -> datetime:
    """A duration ago (``90s``, ``10m``, ``2h``, ``7d``) or an ISO 8601 time with its offset."""
    duration = DURATION.fullmatch(raw)
    if duration is not None:
        count, unit = duration.groups()
        return datetime.now(UTC) - timedelta(seconds=int(count) * UNITS[unit])
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _RefusedError(
            FIELDS.get(field, field),
            "a duration ago (90s, 10m, 2h, 7d) or an ISO 8601 time with its offset "
            "(2026-12-04T18:00:00Z)",
        )
    return moment


def _bad(field: str, message: str) -> web.Response:
    field = field if NAME.fullmatch(field) else "query"  # an odd name is not echoed
    return problem(
        400,
        "invalid-parameter",
        f"the parameter {field!r} is not valid: {message}",
        errors=[{"field": field, "message": message}],
    )


def _unavailable(detail: str) -> web.Response:
    return problem(503, "audit-sink-unavailable", detail)
