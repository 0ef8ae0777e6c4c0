"""Building audit records (AUDIT stream) for the critical actions natsx itself performs.

The record id is the envelope id and so the ``Nats-Msg-Id``: republishing the same record
after a crash stores it once. ADR-0019 (with the audit sink) owns the full list of actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from nats.aio.client import Client

from ruby_natsx.handler import Outbound
from ruby_natsx.publish import Publisher
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


def secret_read(
    subjects: Subjects, *, service: str, path: str, field: str, at: datetime
) -> Outbound:
    """The ``secret.read`` record of ``service`` reading ``field`` of ``path`` (never the value)."""
    return audit_record(
        subjects,
        service=service,
        action="secret.read",
        target=f"vault:{path}#{field}",
        reason="its NATS credential, at start-up" if field == "seed" else "for its job",
        details={"path": path, "field": field, "read_at": at.isoformat()},
    )


class SecretReadFact(Protocol):
    """Where a secret was read from and when (``ruby_runtime.startup.SecretRead``)."""

    @property
    def path(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def at(self) -> datetime: ...


def secrets_read(
    subjects: Subjects, service: str, reads: Iterable[SecretReadFact]
) -> list[Outbound]:
    """The ``secret.read`` records of everything ``service`` read (its start-up reads)."""
    return [
        secret_read(subjects, service=service, path=r.path, field=r.field, at=r.at) for r in reads
    ]


async def publish_records(nc: Client, records: Sequence[Outbound]) -> None:
    """Publish audit records and wait until JetStream stored each (``Nats-Msg-Id`` = record id).

    For the few records a service writes outside a handler (start-up, a CLI command); a
    handler returns its records to the runner instead.
    """
    publisher = Publisher(nc)
    await publisher.start()
    try:
        await publisher.publish(records)
    finally:
        await publisher.close()
