"""What the engine publishes for the effects of its rules: commands, events, audit records.

Every message id is derived (`ruby_rules.engine.ids`), so publishing the same effects twice
stores each message once (``Nats-Msg-Id``) and the gateway executes each command once.
Commands carry the triggering message's correlation id, and it as their causation, so one
automation is one chain from Home Assistant's event to its service call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from ruby_natsx.audit import audit_record
from ruby_natsx.handler import Outbound
from ruby_natsx.subjects import Subjects
from ruby_rules.context import TriggerData
from ruby_rules.engine import Effects
from ruby_rules.engine.interpreter import CommandOut
from ruby_schemas.audit import AuditOutcome
from ruby_schemas.base import Payload
from ruby_schemas.commands import CallServiceV1, FireEventV1, ServiceTarget, TriggerChange
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.rules import RuleEventV1

COMMAND_DEADLINE = timedelta(minutes=5)
"""A command not executed within this long is stale (its outcome is ``expired``)."""

SOURCE = "ruby/engine"


def _envelope(
    payload: Payload, message_id: str, trigger: TriggerData, now: datetime
) -> Envelope[Payload]:
    return make_envelope(
        payload,
        source=SOURCE,
        message_id=message_id,
        correlation_id=trigger.correlation_id or trigger.event_id,
        causation_id=trigger.event_id,
        time=now,
    )


def _command(
    c: CommandOut, now: datetime, late: TriggerChange | None
) -> CallServiceV1 | FireEventV1:
    """The payload of one command: a service call, or an event to fire (ADR-0032)."""
    deadline = now + COMMAND_DEADLINE
    if c.not_after is not None:
        deadline = min(deadline, c.not_after)
    if c.event_type is not None:
        return FireEventV1(
            command_id=c.command_id,
            event_type=c.event_type,
            event_data=c.data,
            deadline=deadline,
            backlog=c.backlog,
            late_trigger=late,
        )
    return CallServiceV1(
        command_id=c.command_id,
        domain=c.domain,
        service=c.service,
        target=ServiceTarget(
            entity_id=tuple(c.target.get("entity_id", ())),
            area_id=tuple(c.target.get("area_id", ())),
            device_id=tuple(c.target.get("device_id", ())),
        ),
        data=c.data,
        deadline=deadline,
        backlog=c.backlog,
        late_trigger=late,
    )


def outbound(
    subjects: Subjects,
    effects: Effects,
    now: datetime,
    *,
    late: Mapping[str, TriggerChange] | None = None,
) -> list[Outbound]:
    """The messages that carry out ``effects``: commands, rule events, then audit records.

    ``late`` maps the id of a state change that reached the engine late to that change: the
    commands of runs it started carry it as ``late_trigger``."""
    out: list[Outbound] = []
    for c in effects.commands:
        payload = _command(c, now, (late or {}).get(c.trigger.event_id))
        out.append(
            Outbound(
                subjects.command(c.domain, c.service),
                _envelope(payload, c.command_id, c.trigger, now),
            )
        )
    for e in effects.events:
        event = RuleEventV1(
            rule_id=e.rule_id, rule_version=e.version, event_type=e.event_type, data=e.data
        )
        out.append(
            Outbound(
                subjects.rule(e.rule_id, e.event_type),
                _envelope(event, e.message_id, e.trigger, now),
            )
        )
    for r in effects.rule_events:
        envelope = _envelope(r.payload, r.message_id, r.trigger, now)
        rule_id: str = getattr(r.payload, "rule_id")  # noqa: B009 - every rule event has one
        out.append(Outbound(subjects.rule(rule_id, r.what), envelope))
        out.append(
            audit_record(
                subjects,
                service="engine",
                action=f"rule.{r.what}",
                target=f"rule:{rule_id}",
                outcome=AuditOutcome.SUCCEEDED if r.what == "fired" else AuditOutcome.FAILED,
                reason=getattr(r.payload, "error_message", ""),
                cause=envelope,
                record_id=f"audit-{r.message_id}",
                details={
                    "rule_version": getattr(r.payload, "rule_version", None),
                    "run_id": getattr(r.payload, "run_id", None),
                    "trigger_event_id": r.trigger.event_id,
                    "command_ids": list(getattr(r.payload, "command_ids", ())),
                },
            )
        )
    return out
