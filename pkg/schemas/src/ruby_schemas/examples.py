"""One realistic example message per registered type, for documentation and baselines.

The examples are built from the models on first use, so they are valid by construction (and a
model change that breaks one fails only where it is used); a compatibility baseline stores the
encoded example of its type when the type is released.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ruby_schemas.audit import AuditOutcome, AuditRecordV1
from ruby_schemas.audit_api import (
    AuditApiErrorV1,
    AuditChainV1,
    AuditQueryV1,
    AuditRecordsV1,
    AuditVerifiedV1,
    AuditVerifyV1,
    AuditWhyV1,
    ChainBreak,
    CommandLink,
    FieldProblem,
    RuleLink,
    StateLink,
    StoredAuditRecord,
)
from ruby_schemas.base import Payload
from ruby_schemas.commands import (
    CallServiceV1,
    CommandOutcomeV1,
    FireEventV1,
    Outcome,
    ServiceTarget,
)
from ruby_schemas.dlq import DeadLetterV1
from ruby_schemas.envelope import Envelope, make_envelope
from ruby_schemas.event_types import HaEventTypesV1
from ruby_schemas.ha_events import EntityState, EventFiredV1, HaLifecycleV1, StateChangedV1
from ruby_schemas.rules import (
    RuleError,
    RuleEventV1,
    RuleFailedV1,
    RuleFiredV1,
    RuleLoadedV1,
    RuleRejectedV1,
    RuleUnloadedV1,
)
from ruby_schemas.webhooks import WebhookCalledV1

EXAMPLE_TIME = datetime(2024, 5, 1, 18, 30, 0, 123456, tzinfo=UTC)
"""The fixed instant every example uses, so examples are deterministic."""
EXAMPLE_ID = "018f34a1-2b3c-7d4e-8f60-7a8b9c0d1e2f"
"""The fixed envelope id every example uses."""
_RULE_VERSION = "sha256:3f7a9c1e"
_LATER = EXAMPLE_TIME + timedelta(milliseconds=250)


def _examples() -> list[Payload]:
    off = EntityState(
        state="off",
        attributes={"friendly_name": "Kitchen", "supported_color_modes": ["brightness"]},
        last_changed=EXAMPLE_TIME - timedelta(hours=1),
        last_updated=EXAMPLE_TIME - timedelta(hours=1),
    )
    on = EntityState(
        state="on",
        attributes={**off.attributes, "brightness": 204},
        last_changed=EXAMPLE_TIME,
        last_updated=EXAMPLE_TIME,
    )
    rule = {"rule_id": "kitchen_motion", "rule_version": _RULE_VERSION, "file": "kitchen.yaml"}
    return [
        StateChangedV1(
            entity_id="light.kitchen",
            old_state=off,
            new_state=on,
            context_id="01HXA9Z5J8K2M4N6P8Q0R2S4T6",
        ),
        EventFiredV1(
            event_type="zha_event",
            data={"device_ieee": "00:11:22:33:44:55:66:77", "command": "on", "args": []},
            origin="LOCAL",
            time_fired=EXAMPLE_TIME,
            context_id="01HXA9Z5J8K2M4N6P8Q0R2S4T7",
        ),
        CallServiceV1(
            command_id="kitchen_motion:018f34a1:0",
            domain="light",
            service="turn_on",
            target=ServiceTarget(entity_id=("light.kitchen",)),
            data={"brightness_pct": 80},
            deadline=EXAMPLE_TIME + timedelta(seconds=30),
        ),
        FireEventV1(
            command_id="cmd-5b0c8f2e9d1a4c3b8e7f6a5d4c3b2a19",
            event_type="doorbell_rang",
            event_data={"where": "front"},
            deadline=EXAMPLE_TIME + timedelta(minutes=5),
        ),
        HaLifecycleV1(
            event="start",
            boot=EXAMPLE_TIME - timedelta(seconds=2),
            at=EXAMPLE_TIME,
            seen="live",
            ha_version="2025.4.4",
        ),
        WebhookCalledV1(
            webhook_id="garage-door_opened",
            method="POST",
            body={"door": "garage", "open": True},
            query={"source": "tasker"},
            received=EXAMPLE_TIME,
            caller="phone",
        ),
        CommandOutcomeV1(
            command_id="kitchen_motion:018f34a1:0",
            domain="light",
            service="turn_on",
            outcome=Outcome.SUCCEEDED,
            ha_context_id="01HXA9Z5J8K2M4N6P8Q0R2S4T8",
            attempts=1,
            finished_at=_LATER,
        ),
        AuditRecordV1(
            record_id="018f34a1-2b3c-7d4e-8f60-000000000001",
            actor="service:gateway",
            action="command.executed",
            target="light.kitchen",
            outcome=AuditOutcome.SUCCEEDED,
            reason="rule kitchen_motion fired on binary_sensor.kitchen_motion",
            correlation_id=EXAMPLE_ID,
            causation_id=EXAMPLE_ID,
            occurred_at=_LATER,
            details={"service": "light.turn_on"},
        ),
        DeadLetterV1(
            original_subject="ruby.evt.ha.state.light.kitchen",
            stream="EVENTS",
            consumer="engine",
            stream_sequence=4211,
            delivery_count=1,
            reason="undecodable",
            error="invalid JSON: expected value at line 1 column 1",
            first_failed_at=EXAMPLE_TIME,
            last_failed_at=EXAMPLE_TIME,
            headers={"Nats-Msg-Id": "01HXA9Z5J8K2M4N6P8Q0R2S4T6"},
            original_payload=b"\xff\xfenot json",
        ),
        RuleLoadedV1(**rule),
        RuleRejectedV1(
            file="kitchen.yaml",
            rule_id="kitchen_motion",
            kept_version=_RULE_VERSION,
            errors=(
                RuleError(file="kitchen.yaml", line=7, column=5, message="unknown key 'tirgger'"),
            ),
        ),
        RuleFiredV1(**rule, trigger_id="motion", command_ids=("kitchen_motion:018f34a1:0",)),
        RuleFailedV1(
            **rule, stage="action", error_type="TimeoutError", error_message="timer store timed out"
        ),
        RuleUnloadedV1(**rule, reason="removed"),
        RuleEventV1(
            rule_id="kitchen_motion",
            rule_version=_RULE_VERSION,
            event_type="kitchen_lit",
            data={"brightness_pct": 60},
        ),
        HaEventTypesV1(event_types=("deconz_event", "zha_event")),
        *_audit_api(),
    ]


def _audit_api() -> list[Payload]:
    """The audit API's requests and replies (ADR-0036)."""
    record = AuditRecordV1(
        record_id="audit.cmd.kitchen_motion:018f34a1:0",
        actor="service:gateway",
        action="command.executed",
        target="light.turn_on",
        outcome=AuditOutcome.SUCCEEDED,
        reason="",
        correlation_id="ha.binary_sensor.kitchen_motion.2024-05-01T18:30:00+00:00",
        occurred_at=EXAMPLE_TIME,
        details={"command_id": "kitchen_motion:018f34a1:0", "ha_context_id": "01HXA9Z5J8K2"},
    )
    hash_ = "9f" * 32
    return [
        AuditQueryV1(since=EXAMPLE_TIME - timedelta(hours=2), action="command.*", limit=20),
        AuditRecordsV1(
            records=(StoredAuditRecord(seq=7, hash=hash_, stored_at=EXAMPLE_TIME, record=record),),
            truncated=False,
        ),
        AuditWhyV1(
            entity_id="light.kitchen",
            context_id="01HXA9Z5J8K2",
            state="on",
            changed_at=EXAMPLE_TIME,
        ),
        AuditChainV1(
            entity_id="light.kitchen",
            context_id="01HXA9Z5J8K2",
            state="on",
            caused_by_ruby_core=True,
            complete=True,
            end=None,
            chain=(
                StateLink(
                    entity_id="light.kitchen",
                    state="on",
                    changed_at=EXAMPLE_TIME,
                    context_id="01HXA9Z5J8K2",
                ),
                CommandLink(
                    command_id="kitchen_motion:018f34a1:0",
                    service="light.turn_on",
                    executed_at=EXAMPLE_TIME,
                    actor="service:gateway",
                    correlation_id=record.correlation_id,
                    record_id=record.record_id,
                    seq=7,
                ),
                RuleLink(
                    rule_id="kitchen_motion",
                    rule_version=_RULE_VERSION,
                    fired_at=EXAMPLE_TIME,
                    trigger_event_id=record.correlation_id,
                    run_id="018f34a1",
                    correlation_id=record.correlation_id,
                    record_id="audit-kitchen_motion.fired",
                    seq=6,
                ),
            ),
        ),
        AuditVerifyV1(),
        AuditVerifiedV1(
            ok=False,
            count=6,
            head_seq=6,
            head_hash=hash_,
            broken=ChainBreak(
                seq=7,
                record_id=record.record_id,
                reason="its content does not match its hash: the record was edited",
            ),
            published_seq=7,
        ),
        AuditApiErrorV1(
            code="invalid-request",
            detail="the request is not an audit query",
            errors=(FieldProblem(field="limit", message="must be at most 1000"),),
        ),
    ]


@functools.cache
def examples() -> Mapping[str, Payload]:
    """Return type string → a representative payload of that type."""
    return {payload.TYPE: payload for payload in _examples()}


def example_envelope(message_type: str) -> Envelope[Payload]:
    """Return the example of `message_type` in a deterministic envelope (fixed id and time).

    Raises `KeyError` if the type has no example.
    """
    return make_envelope(
        examples()[message_type], source="ruby/example", time=EXAMPLE_TIME, message_id=EXAMPLE_ID
    )
