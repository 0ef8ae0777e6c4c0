"""Building audit records (AUDIT stream) for the critical actions natsx itself performs.

The record id is the envelope id and so the ``Nats-Msg-Id``: republishing the same record
after a crash stores it once. ADR-0019 (with the audit sink) owns the full list of actions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ruby_natsx.handler import Outbound
from ruby_natsx.subjects import Subjects
from ruby_schemas.audit import AuditOutcome, AuditRecordV1
from ruby_schemas.base import Payload
from ruby_schemas.envelope import Envelope, make_envelope, new_id
from ruby_schemas.primitives import JsonObject


def audit_record(
    subjects: Subjects,
    *,
    service: str,
    action: str,
    target: str,
    outcome: AuditOutcome = AuditOutcome.SUCCEEDED,
    reason: str = "",
    cause: Envelope[Payload] | None = None,
    record_id: str | None = None,
    details: JsonObject | None = None,
) -> Outbound:
    """An audit record by ``service`` about ``action`` on ``target``, ready to publish."""
    rid = record_id or new_id()
    now = datetime.now(UTC)
    correlation = cause.correlation_id if cause else rid
    record = AuditRecordV1(
        record_id=rid,
        actor=f"service:{service}",
        action=action,
        target=target,
        outcome=outcome,
        reason=reason,
        correlation_id=correlation,
        causation_id=cause.id if cause else None,
        occurred_at=now,
        details=details,
    )
    envelope = make_envelope(
        record,
        source=f"ruby/{service}",
        message_id=rid,
        correlation_id=correlation,
        causation_id=cause.id if cause else None,
        time=now,
    )
    return Outbound(subjects.audit(service, action.replace(".", "_")), envelope)
