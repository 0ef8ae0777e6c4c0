"""Commands from the API: ``POST /services/{domain}/{service}`` (a service call) and ``POST
/events/{event_type}`` (an event fired on Home Assistant's bus, as HA's own REST API does; a
rule's ``event`` trigger sees it when it comes back) become commands on COMMANDS, and ``GET
/commands/{command_id}`` says how one ended (ADR-0020).

A command made here is the engine's kind (``ha.call_service.v1``), executed by the same
runner behind the same ledger: once per command id. With an ``Idempotency-Key`` header the
command id is derived from the token's name and the key, so a retried request (a timeout, a
lost answer) names the same command: JetStream drops the duplicate within its window, and
the ledger keeps Home Assistant from being called twice after that. Without the header, each
request is a new command.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from ruby_gateway.api.edge import TOKEN_HEADER
from ruby_gateway.api.problems import problem
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_schemas.commands import (
    FIRE_EVENT_DOMAIN,
    FIRE_EVENT_SERVICE,
    CallServiceV1,
    CommandOutcomeV1,
    FireEventV1,
    ServiceTarget,
)
from ruby_schemas.envelope import make_envelope, new_id
from ruby_schemas.primitives import ENTITY_ID_PATTERN, ID_PATTERN, SLUG_PATTERN
from ruby_schemas.registry import decode, field_errors

DEADLINE: Final = timedelta(minutes=5)
"""How long a command from the API may wait to be executed (as the engine's do)."""
IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,128}")
REMEMBERED: Final = 10_000
"""Command ids accepted here and not yet in the ledger that `status` still answers for."""


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity_id: list[str] | str = Field(default_factory=list)
    device_id: list[str] | str = Field(default_factory=list)
    area_id: list[str] | str = Field(default_factory=list)


class FiredEvent(BaseModel):
    """The body of ``POST /events/{event_type}``; nothing else is accepted."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, JsonValue] = Field(default_factory=dict)


class ServiceCall(BaseModel):
    """The body of ``POST /services/{domain}/{service}``; nothing else is accepted."""

    model_config = ConfigDict(extra="forbid")

    target: _Target = Field(default_factory=_Target)
    data: dict[str, JsonValue] = Field(default_factory=dict)


def derived_id(prefix: str, idempotency_key: str | None, *named_by: str) -> str:
    """``prefix`` and a digest of ``named_by`` and the key, so a retried request names the same
    message; new when there is no key."""
    if idempotency_key is None:
        return f"{prefix}{new_id()}"
    digest = hashlib.sha256("\n".join((*named_by, idempotency_key)).encode()).hexdigest()
    return f"{prefix}{digest[:32]}"


def command_id(token_name: str, idempotency_key: str | None) -> str:
    """The command id: derived from the token and the key, or new when there is no key."""
    return derived_id("api.", idempotency_key, token_name)


def _listed(value: list[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class Commands:
    """The two handlers, publishing as the gateway and reading its ledger."""

    def __init__(self, nc: Client, subjects: Subjects, ledger: KeyValue) -> None:
        self._subjects, self._ledger = subjects, ledger
        self._publisher = Publisher(nc)
        self._accepted: OrderedDict[str, None] = OrderedDict()

    @property
    def publisher(self) -> Publisher:
        """The API's one publisher (its reply inbox), which the webhooks share."""
        return self._publisher

    @property
    def subjects(self) -> Subjects:
        return self._subjects

    async def start(self) -> None:
        """One publisher for every command and webhook (its reply inbox), not one per request."""
        await self._publisher.start()

    async def close(self) -> None:
        await self._publisher.close()

    async def call_service(self, request: web.Request) -> web.Response:
        domain, service = request.match_info["domain"], request.match_info["service"]
        for field, value in (("domain", domain), ("service", service)):
            if not re.fullmatch(SLUG_PATTERN, value):
                return problem(
                    400,
                    "invalid-service",
                    f"{field} is lower-case letters, digits and single '_'",
                    errors=[{"field": field, "message": "not a service name"}],
                )
        key, refused = idempotency_key(request)
        if refused is not None:
            return refused
        body = await request.read()
        try:
            call = ServiceCall.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return _refused(exc)
        targets = {
            "entity_id": _listed(call.target.entity_id),
            "device_id": _listed(call.target.device_id),
            "area_id": _listed(call.target.area_id),
        }
        bad = [e for e in targets["entity_id"] if not re.fullmatch(ENTITY_ID_PATTERN, e)]
        if bad:
            return problem(
                400,
                "invalid-entity-id",
                "an entity id is <domain>.<object id>, lower-case letters, digits and '_'",
                errors=[{"field": "target.entity_id", "message": "not an entity id"}],
            )
        cid = command_id(request.headers.get(TOKEN_HEADER, ""), key)
        now = datetime.now(UTC)
        try:
            payload = CallServiceV1(
                command_id=cid,
                domain=domain,
                service=service,
                target=ServiceTarget(**targets),
                data=call.data,
                deadline=now + DEADLINE,
                backlog="all",  # asked for now, by someone: not a backlog to thin out
            )
        except ValidationError as exc:
            return _refused(exc)
        return await self._accepted_as(self._subjects.command(domain, service), payload, now)

    async def fire_event(self, request: web.Request) -> web.Response:
        event_type = request.match_info["event_type"]
        key, refused = idempotency_key(request)
        if refused is not None:
            return refused
        try:
            fired = FiredEvent.model_validate_json(await request.read() or b"{}")
        except ValidationError as exc:
            return _refused(exc, "an event's data")
        now = datetime.now(UTC)
        try:
            payload = FireEventV1(
                command_id=command_id(request.headers.get(TOKEN_HEADER, ""), key),
                event_type=event_type,
                event_data=fired.data,
                deadline=now + DEADLINE,
                backlog="all",
            )
        except ValidationError as exc:
            return _refused(exc, "an event", field="event_type")
        subject = self._subjects.command(FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE)
        return await self._accepted_as(subject, payload, now)

    async def _accepted_as(
        self, subject: str, payload: CallServiceV1 | FireEventV1, now: datetime
    ) -> web.Response:
        """Publish the command (its id is the message id: a duplicate is dropped); 202."""
        cid = payload.command_id
        envelope = make_envelope(payload, source="ruby/gateway/api", message_id=cid, time=now)
        await self._publisher.publish([Outbound(subject, envelope)])
        self._remember(cid)
        return web.json_response(
            {"command_id": cid, "status": "accepted"},
            status=202,
            headers={"Location": f"/api/v1/commands/{cid}"},
        )

    async def command_status(self, request: web.Request) -> web.Response:
        cid = request.match_info["command_id"]
        if not re.fullmatch(ID_PATTERN, cid) or len(cid) > 256:
            return problem(
                400,
                "invalid-command-id",
                "not a command id",
                errors=[{"field": "command_id", "message": "not a command id"}],
            )
        try:
            entry = await self._ledger.get(f"cmd.{cid}")
        except KeyNotFoundError:
            if cid in self._accepted:
                return web.json_response({"command_id": cid, "status": "pending"})
            return problem(404, "no-such-command", f"no command {cid} is known (or still kept)")
        return web.json_response(_status(cid, json.loads(entry.value or b"{}")))

    def _remember(self, cid: str) -> None:
        self._accepted[cid] = None
        self._accepted.move_to_end(cid)
        while len(self._accepted) > REMEMBERED:
            self._accepted.popitem(last=False)


def _status(cid: str, record: dict[str, Any]) -> dict[str, object]:
    """What the ledger says of a command: pending, or its outcome."""
    if record.get("state") != "done":
        return {"command_id": cid, "status": "pending"}
    for output in record.get("outputs", []):
        envelope = decode(str(output.get("envelope", "")))
        if isinstance(envelope.data, CommandOutcomeV1):
            outcome = envelope.data
            return {
                "command_id": cid,
                "status": outcome.outcome.value,
                "ha_context_id": outcome.ha_context_id,
                "error_code": outcome.error_code,
                "error_message": outcome.error_message,
                "finished_at": outcome.finished_at.isoformat(),
            }
    return {"command_id": cid, "status": "done"}


def idempotency_key(request: web.Request) -> tuple[str | None, web.Response | None]:
    """The request's ``Idempotency-Key`` (None without one), or the problem it is."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        return None, problem(
            400,
            "invalid-idempotency-key",
            "Idempotency-Key is 1 to 128 visible ASCII characters",
            errors=[{"field": "Idempotency-Key", "message": "not a key"}],
        )
    return key, None


def _refused(exc: ValidationError, what: str = "a service call", field: str = "") -> web.Response:
    """A 400 naming each wrong field (``field`` for a path parameter), never its value."""
    errors = [{"field": field or e.path or "body", "message": e.message} for e in field_errors(exc)]
    return problem(400, "invalid-body", f"the request is not {what}", errors=errors)
