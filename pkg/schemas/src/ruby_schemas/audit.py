"""Audit records: one per critical action, kept append-only by the audit sink."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar, Final

from ruby_schemas.base import Payload
from ruby_schemas.primitives import JsonObject, MessageId, NonEmptyStr, UtcDatetime


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

    record_id: MessageId
    """Unique id of this record; the audit store is idempotent on it (and it is the
    `Nats-Msg-Id` of the record's message)."""
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
    correlation_id: MessageId
    """The automation run (or request) this action belongs to."""
    causation_id: MessageId | None = None
    """The id of the message that caused the action, if any."""
    occurred_at: UtcDatetime
    """When the action happened."""
    details: JsonObject | None = None
    """Further facts about the action, as JSON values."""


AUDITED_ACTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "command.executed": "gateway: Home Assistant executed a service call (details: command "
        "id, HA context id)",
        "command.refused": "gateway: a command was rejected, expired or failed",
        "rule.loaded": "engine: a rule was loaded (start, new file, new rule)",
        "rule.changed": "engine: a rule's definition changed (details: the new version)",
        "rule.unloaded": "engine: a rule was removed from its file, or its file deleted",
        "rule.rejected": "engine: a rule file was refused; its last good rules keep running",
        "rule.fired": "engine: a rule ran (details: triggering event id, command ids)",
        "rule.failed": "engine: a rule run failed (an expression error, a `stop` as error)",
        "message.dead_lettered": "any consumer: a message was given up on and dead-lettered",
        "message.replayed": "operator: `rubyctl dlq replay` put a dead letter back",
        "message.purged": "operator: `rubyctl dlq purge` removed dead letters",
        "secret.read": "every service: a secret was read from Vault (path and field only)",
        "secret.written": "operator: `rubyctl secret ha-token` stored the Home Assistant token",
        "auth.refused": "gateway: Home Assistant refused the token (auth_invalid)",
        "bootstrap.changed": "operator: bootstrap changed Vault, identities or NATS config",
        "service.restarted": "operator: `rubyctl up` restarted a process that died (details: "
        "process, exit code, new pid, restarts so far)",
        "audit.store_mismatch": "audit sink: at start, its store does not reach the head it "
        "published before (rows removed or changed while it was down)",
        "token.created": "operator: `rubyctl token create` made an API token (details: id, "
        "scope, expiry; never the token)",
        "token.revoked": "operator: `rubyctl token revoke` revoked an API token",
        "api.refused": "gateway: the edge refused an API request (route, client address, "
        "reason: missing, malformed, unknown, expired, revoked or scope; never the token)",
    }
)
"""Every critical action that leaves an audit record, and who records it when (ADR-0019)."""
