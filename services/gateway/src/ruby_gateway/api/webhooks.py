"""Webhooks from the API: ``POST /webhooks/{webhook_id}`` publishes an ``api.webhook.v1`` on
``<p>.evt.api.webhook.<webhook_id>``, which the engine offers to the rules' ``webhook``
triggers (ADR-0037).

The body is any JSON value, or nothing. With an ``Idempotency-Key`` header the event's id is
derived from the token's name, the webhook id and the key, so a retried call (a timeout, a
lost answer) is one event: JetStream drops the duplicate within EVENTS' window, and after it
the engine derives the same run and command ids from the same event id, which the command
ledger runs once. Without the header, each call is a new event.

A webhook id no loaded rule listens to is accepted all the same (202): the caller holds a
``control`` token, so there is nothing to hide from probing, and the answer does not depend on
a rule reload racing the call. 202 says the call is recorded, not that a rule ran; a rule's
traces say that.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Final, NoReturn

from aiohttp import web
from pydantic import JsonValue, ValidationError

from ruby_gateway.api.commands import derived_id, idempotency_key
from ruby_gateway.api.edge import TOKEN_HEADER
from ruby_gateway.api.problems import problem
from ruby_natsx.errors import TransientError
from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
from ruby_natsx.subjects import Subjects
from ruby_schemas.envelope import make_envelope
from ruby_schemas.registry import field_errors
from ruby_schemas.webhooks import WEBHOOK_ID_HINT, WEBHOOK_ID_PATTERN, WebhookCalledV1

WEBHOOK_ID: Final = re.compile(WEBHOOK_ID_PATTERN)
MAX_BODY: Final = 256 * 1024
"""Bytes of a webhook's body. Below the edge's 1 MiB: the event must fit in one message
(1 MiB at most), and a run that pauses keeps its trigger in a timer record."""
RETRY_AFTER: Final = "2"
"""Seconds a client is told to wait when the call could not be recorded (NATS unavailable)."""


def event_id(token_name: str, webhook_id: str, idempotency_key: str | None) -> str:
    """The event's id: derived from the token, the webhook and the key, or new without a key."""
    return derived_id("api.webhook.", idempotency_key, token_name, webhook_id)


class Webhooks:
    """The handler, publishing with the API's one publisher (started and closed by its owner)."""

    def __init__(self, publisher: Publisher, subjects: Subjects) -> None:
        self._publisher, self._subjects = publisher, subjects

    async def call(self, request: web.Request) -> web.Response:
        webhook_id = request.match_info["webhook_id"]
        if not WEBHOOK_ID.fullmatch(webhook_id):
            return problem(
                400,
                "invalid-webhook-id",
                WEBHOOK_ID_HINT,
                errors=[{"field": "webhook_id", "message": "not a webhook id"}],
            )
        key, refused = idempotency_key(request)
        if refused is not None:
            return refused
        raw = await request.read()
        if len(raw) > MAX_BODY:
            return problem(
                413,
                "too-large",
                f"a webhook's body has at most {MAX_BODY} bytes",
                errors=[{"field": "body", "message": "too large"}],
            )
        try:
            body = _json(raw)
        except ValueError:
            return problem(
                400,
                "invalid-body",
                "a webhook's body is JSON (any value), or empty",
                errors=[{"field": "body", "message": "not JSON"}],
            )
        caller = request.headers.get(TOKEN_HEADER, "")
        now = datetime.now(UTC)
        try:
            payload = WebhookCalledV1(
                webhook_id=webhook_id,
                method="POST",
                body=body,
                query={name: request.query.getone(name) for name in request.query},
                received=now,
                caller=caller,
            )
        except ValidationError as exc:
            errors = [{"field": e.path or "body", "message": e.message} for e in field_errors(exc)]
            return problem(400, "invalid-body", "the request is not a webhook call", errors=errors)
        mid = event_id(caller, webhook_id, key)
        envelope = make_envelope(payload, source="ruby/gateway/api", message_id=mid, time=now)
        try:
            await self._publisher.publish([Outbound(self._subjects.webhook(webhook_id), envelope)])
        except TransientError:
            return problem(
                503,
                "unavailable",
                "the call could not be recorded; try again with the same Idempotency-Key",
                headers={"Retry-After": RETRY_AFTER},
            )
        return web.json_response(
            {"event_id": mid, "webhook_id": webhook_id, "status": "accepted"}, status=202
        )


def _json(raw: bytes) -> JsonValue:
    """The body as a JSON value (None when empty); `ValueError` when it is not JSON (NaN and
    Infinity, which Python would read, included)."""
    text = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not text.strip():
        return None
    value: JsonValue = json.loads(text, parse_constant=_no_constant)
    return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
