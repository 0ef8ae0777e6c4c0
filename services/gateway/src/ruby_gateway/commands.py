"""Executing commands from COMMANDS: one Home Assistant service call, or one event fired on its
bus (``fire_event``, ADR-0032), per command id.

The handler runs under the natsx runner behind ``idempotent(store, key=command_key)``, so a
command delivered any number of times calls HA once within the ledger's window. Every outcome
is returned as a ``cmd.outcome.v1`` event plus an audit record, with ids derived from the
command id (a re-publish is stored once). HA's answer decides the message's fate:

| HA says | outcome | the command message |
|---|---|---|
| success | succeeded | acked |
| the deadline passed before the call | expired | acked (nothing to retry) |
| not_found, invalid_format, service_validation_error, unauthorized | rejected | dead-lettered |
| disconnected, timed out, other errors | (none yet) | nak'ed, retried with backoff |

Nothing stale reaches a device (DESIGN promise 11): commands on one entity run one at a time
in stream order (`ruby_gateway.ordering`), a ``latest`` command older than one already executed
on the same entities is not run (outcome ``expired``, code ``superseded``), nor is a late one
(``tuning.LATE_AFTER``) when a newer one already waits for the same entities, nor one started
by a change that reached the engine late when Home Assistant has changed that entity since
(``late_trigger``): a backlog is not replayed as a burst. A command whose
claim was left by a gateway that died is first looked for in Home Assistant's state
(`ruby_gateway.recovery`): found, it is recorded as executed with that context, not repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import JsonValue

from ruby_gateway.ha_client import HaConnection, HaDisconnectedError, HaError
from ruby_gateway.ordering import TargetOrder
from ruby_gateway.recovery import find_out
from ruby_natsx import tuning
from ruby_natsx.audit import audit_record
from ruby_natsx.errors import PermanentError, TransientError
from ruby_natsx.handler import Delivery, Handler, Outbound
from ruby_natsx.idempotency import taken_over
from ruby_natsx.subjects import Subjects
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.base import Payload
from ruby_schemas.commands import (
    FIRE_EVENT_DOMAIN,
    FIRE_EVENT_SERVICE,
    CallServiceV1,
    CommandOutcomeV1,
    FireEventV1,
    Outcome,
)
from ruby_schemas.envelope import Envelope, make_envelope

log = structlog.get_logger("ruby_gateway.commands")

PERMANENT_CODES = frozenset(
    {"not_found", "invalid_format", "service_validation_error", "unauthorized"}
)
"""HA error codes that no retry can fix: the command itself is wrong."""

MAX_CALL_WAIT = 10.0
"""The longest a single call_service may take, even with a far deadline."""
LATE = timedelta(seconds=tuning.LATE_AFTER)


Command = CallServiceV1 | FireEventV1
"""What the gateway executes: a service call, or an event to fire on Home Assistant's bus."""


def targets(command: Command) -> tuple[str, ...]:
    """The entities a command acts on (an event fired on the bus acts on none)."""
    return command.target.entity_id if isinstance(command, CallServiceV1) else ()


def command_key(envelope: Envelope[Payload], delivery: Delivery) -> str:
    """The idempotency key: the command id (one HA call per command, whatever the message)."""
    if isinstance(envelope.data, CallServiceV1 | FireEventV1):
        return f"cmd.{envelope.data.command_id}"
    return f"msg.{envelope.id}"


def _connected(connection: Callable[[], HaConnection | None]) -> HaConnection:
    """The current Home Assistant connection; `TransientError` while there is none."""
    conn = connection()
    if conn is None:
        raise TransientError("home assistant is not connected")
    return conn


def command_handler(
    subjects: Subjects,
    connection: Callable[[], HaConnection | None],
    order: TargetOrder,
    *,
    service: str = "gateway",
) -> Handler:
    """The handler; ``connection()`` returns the current HA connection, or None while down.
    ``order`` must be the one `ruby_gateway.ordering.in_turn` serialises the handler with."""

    async def execute(envelope: Envelope[Payload], delivery: Delivery) -> Sequence[Outbound]:
        command = envelope.data
        if not isinstance(command, CallServiceV1 | FireEventV1):
            raise PermanentError(f"{envelope.type} is not a command")
        now = datetime.now(UTC)
        entities = targets(command)
        latest = command.backlog == "latest"
        # A claim taken over from a dead gateway first: Home Assistant may have run its call
        # already, and a run that happened is recorded as executed, never refused as expired
        # or stale.
        dead = taken_over()
        if dead is not None:
            try:
                finding = await find_out(_connected(connection), command, dead.since)
            except HaDisconnectedError as exc:
                raise TransientError(str(exc)) from exc
            log.warning(
                "command claimed by a dead gateway",
                command_id=command.command_id,
                owner=dead.owner,
                verdict=finding.verdict,
                reason=finding.reason,
            )
            if finding.verdict == "executed":
                order.executed(entities, command.command_id, envelope.time)
                return _report(subjects, service, envelope, command, Outcome.SUCCEEDED,
                               delivery, reason=finding.reason,
                               context_id=finding.context_id)  # fmt: skip
            if finding.verdict == "unknown":
                return _report(subjects, service, envelope, command, Outcome.FAILED, delivery,
                               reason=finding.reason, code="outcome_unknown")  # fmt: skip
            if finding.verdict == "superseded" and latest:
                return _report(subjects, service, envelope, command, Outcome.EXPIRED, delivery,
                               reason=finding.reason, code="superseded")  # fmt: skip
        if command.deadline <= now:
            return _report(
                subjects,
                service,
                envelope,
                command,
                Outcome.EXPIRED,
                delivery,
                reason=f"deadline {command.deadline.isoformat()} passed",
            )
        conn = _connected(connection)
        newer = order.superseded(entities, envelope.time) if latest else None
        if newer is not None:
            reason = (
                f"superseded: command {newer.command_id}, created later "
                f"({newer.created.isoformat()}), was already executed on {', '.join(entities)}"
            )
            return _report(subjects, service, envelope, command, Outcome.EXPIRED, delivery,
                           reason=reason, code="superseded")  # fmt: skip
        waiting = (
            order.waiting_newer(entities, envelope.time)
            if latest and now - envelope.time > LATE
            else None
        )
        if waiting is not None:
            reason = (
                f"superseded: a command created later ({waiting.isoformat()}) already waits "
                f"to run on {', '.join(entities)}; this one is {now - envelope.time} late"
            )
            return _report(subjects, service, envelope, command, Outcome.EXPIRED, delivery,
                           reason=reason, code="superseded")  # fmt: skip
        trigger = command.late_trigger
        since = (
            order.changed_since(trigger.entity_id, trigger.last_changed)
            if latest and trigger is not None
            else None
        )
        if trigger is not None and since is not None:
            reason = (
                f"superseded: {trigger.entity_id} changed again at {since.isoformat()}, after "
                f"the change that started this run ({trigger.last_changed.isoformat()}), "
                "which reached the engine late"
            )
            return _report(subjects, service, envelope, command, Outcome.EXPIRED, delivery,
                           reason=reason, code="superseded")  # fmt: skip
        wait = min(MAX_CALL_WAIT, (command.deadline - now).total_seconds())
        try:
            kind, fields = _request(command)
            result = await conn.call(kind, within=wait, **fields)
        except HaError as exc:
            if exc.code in PERMANENT_CODES:
                raise PermanentError(
                    str(exc),
                    _report(
                        subjects,
                        service,
                        envelope,
                        command,
                        Outcome.REJECTED,
                        delivery,
                        reason=str(exc),
                        error=exc,
                    ),
                ) from exc
            raise TransientError(str(exc)) from exc
        except HaDisconnectedError as exc:
            raise TransientError(str(exc)) from exc
        context = result.get("context") if isinstance(result, dict) else None
        context_id = context.get("id") if isinstance(context, dict) else None
        order.executed(entities, command.command_id, envelope.time)
        return _report(
            subjects,
            service,
            envelope,
            command,
            Outcome.SUCCEEDED,
            delivery,
            reason=(
                "home assistant accepted the call"
                if isinstance(command, CallServiceV1)
                else f"home assistant fired {command.event_type}"
            ),
            context_id=context_id,
        )

    return execute


def _request(command: Command) -> tuple[str, dict[str, JsonValue]]:
    """The WebSocket command that executes ``command``, and its fields."""
    if isinstance(command, FireEventV1):
        return "fire_event", {"event_type": command.event_type, "event_data": command.event_data}
    target: dict[str, JsonValue] = {
        name: list(ids) for name, ids in command.target.model_dump().items() if ids
    }
    return "call_service", {
        "domain": command.domain,
        "service": command.service,
        "service_data": command.data,
        "target": target,
    }


def _names(command: Command) -> tuple[str, str]:
    """The domain and service a command's outcome is filed under (``homeassistant.fire_event``
    for an event, `ruby_schemas.commands.FireEventV1`)."""
    if isinstance(command, FireEventV1):
        return FIRE_EVENT_DOMAIN, FIRE_EVENT_SERVICE
    return command.domain, command.service


def _report(
    subjects: Subjects,
    service: str,
    envelope: Envelope[Payload],
    command: Command,
    outcome: Outcome,
    delivery: Delivery,
    *,
    reason: str,
    error: HaError | None = None,
    context_id: object = None,
    code: str | None = None,
) -> list[Outbound]:
    domain, name = _names(command)
    payload = CommandOutcomeV1(
        command_id=command.command_id,
        domain=domain,
        service=name,
        outcome=outcome,
        error_code=error.code if error else code,
        error_message=error.message if error else None,
        ha_context_id=context_id if isinstance(context_id, str) else None,
        attempts=delivery.delivered,
        finished_at=datetime.now(UTC),
    )
    event = make_envelope(
        payload,
        source=f"ruby/{service}",
        cause=envelope,
        message_id=f"outcome.{command.command_id}",
    )
    executed = outcome is Outcome.SUCCEEDED
    audit = audit_record(
        subjects,
        service=service,
        action="command.executed" if executed else "command.refused",
        target=f"{domain}.{name}",
        outcome=AuditOutcome.SUCCEEDED if executed else AuditOutcome.FAILED,
        reason=reason,
        cause=envelope,
        record_id=f"audit.cmd.{command.command_id}",
        details={
            "command_id": command.command_id,
            "ha_context_id": payload.ha_context_id,
            "outcome": outcome.value,
            "error_code": payload.error_code,
            **({"event_type": command.event_type} if isinstance(command, FireEventV1) else {}),
        },
    )
    log.info(
        "command finished",
        command_id=command.command_id,
        service=f"{domain}.{name}",
        entity_ids=list(targets(command)),
        outcome=outcome.value,
        reason=reason,
    )
    subject = subjects.cmd_outcome(outcome.value, domain, name)
    return [Outbound(subject, event), audit]
