"""Audit records: one per critical action, kept append-only by the audit sink."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from ruby_schemas.base import Payload
from ruby_schemas.primitives import JsonObject, NonEmptyStr, UtcDatetime


class AuditOutcome(StrEnum):
    """Whether the audited action happened."""

    SUCCEEDED = "succeeded"
    """The action was carried out."""
    FAILED = "failed"
    """The action was attempted and failed."""
    DENIED = "denied"
    """The action was refused (authentication or authorisation)."""


class AuditRecordV1(Payload):
    """A critical action happened: who did what to what, with what result, and why."""

    TYPE: ClassVar[str] = "audit.record.v1"

    record_id: NonEmptyStr
    """Unique id of this record; the audit store is idempotent on it."""
    actor: NonEmptyStr
    """Who acted: a service (`service:gateway`), a user or a rule (`rule:<rule_id>`)."""
    action: NonEmptyStr
    """What was done, dotted, such as `command.executed` or `secret.read`."""
    target: NonEmptyStr
    """What it was done to, such as `light.kitchen` or `rules/kitchen.yaml`."""
    outcome: AuditOutcome
    """Whether it happened."""
    reason: str
    """Why it was done or refused, in words."""
    correlation_id: NonEmptyStr
    """The automation run (or request) this action belongs to."""
    causation_id: str | None = None
    """The id of the message that caused the action, if any."""
    occurred_at: UtcDatetime
    """When the action happened."""
    details: JsonObject | None = None
    """Further facts about the action, as JSON values."""
