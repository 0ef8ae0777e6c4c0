"""The audit API over NATS request/reply: the gateway asks, the audit sink answers (ADR-0036).

Requests and replies are envelopes like every other message, on ``<p>.api.audit.<verb>``,
which no stream stores. ``query`` asks for `AuditQueryV1` and gets `AuditRecordsV1`; ``why``
asks `AuditWhyV1` and gets the chain of causes, `AuditChainV1` (what ``rubyctl audit why``
prints); ``verify`` asks `AuditVerifyV1` and gets `AuditVerifiedV1`. A request that cannot be
answered gets `AuditApiErrorV1` instead, naming the field when the request is at fault.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal, TypeAlias

from pydantic import Field

from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.base import Contract, Payload
from ruby_schemas.primitives import EntityId, UtcDatetime

QUERY_LIMIT: Final = 100
"""How many records a query returns when it does not say."""
QUERY_LIMIT_MAX: Final = 1000
"""The most records one query returns."""

Filter: TypeAlias = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^*\s]+\*?$")]
"""An exact value, or a prefix when it ends with ``*`` (no other wildcard, no whitespace)."""


# --- query ---------------------------------------------------------------------------------


class AuditQueryV1(Payload):
    """Records matching every filter given; the ``limit`` newest of them, oldest first."""

    TYPE: ClassVar[str] = "audit.query.v1"

    since: UtcDatetime | None = None
    """Records that occurred at or after this time."""
    until: UtcDatetime | None = None
    """Records that occurred before this time."""
    actor: Filter | None = None
    """Who acted, such as `service:gateway`."""
    action: Filter | None = None
    """What was done, such as `command.executed`, or `rule.*` for a prefix."""
    target: Filter | None = None
    """What it was done to, such as `light.turn_on` or `rule:porch_light`."""
    limit: int = Field(default=QUERY_LIMIT, ge=1, le=QUERY_LIMIT_MAX)
    """At most this many records: the newest matches."""


class StoredAuditRecord(Contract):
    """One record as the store keeps it: its place in the hash chain and the record."""

    seq: int = Field(ge=1)
    """Its place in the chain: 1, 2, 3... without gaps."""
    hash: str
    """Its chain hash (SHA-256, hex)."""
    stored_at: UtcDatetime
    """When the sink stored it."""
    record: AuditRecordV1
    """The record."""


class AuditRecordsV1(Payload):
    """The answer to `AuditQueryV1`."""

    TYPE: ClassVar[str] = "audit.records.v1"

    records: tuple[StoredAuditRecord, ...]
    """The matches, oldest first."""
    truncated: bool
    """True when more records matched than the limit: older ones were left out."""


# --- why -----------------------------------------------------------------------------------


class AuditWhyV1(Payload):
    """Why an entity is in its state: the chain starts from its last change's context."""

    TYPE: ClassVar[str] = "audit.why.v1"

    entity_id: EntityId
    """The entity asked about."""
    context_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Home Assistant's context id of its last change (the asker's projection has it)."""
    state: str | None = None
    """Its current state, shown at the head of the chain."""
    changed_at: UtcDatetime | None = None
    """When it last changed."""


class StateLink(Contract):
    """A state change: the one asked about, or one that triggered a rule."""

    link: Literal["state"] = "state"
    entity_id: str
    state: str | None = None
    old_state: str | None = None
    changed_at: UtcDatetime | None = None
    context_id: str | None = None
    event_id: str | None = None
    reconciled: bool = False
    note: str | None = None
    """Why the change is known only by its event id (not read from EVENTS)."""


class CommandLink(Contract):
    """The gateway executed a command, and Home Assistant answered with the context."""

    link: Literal["command"] = "command"
    command_id: str
    service: str
    executed_at: UtcDatetime
    actor: str
    correlation_id: str
    record_id: str
    seq: int


class RuleLink(Contract):
    """A rule fired and sent the command."""

    link: Literal["rule"] = "rule"
    rule_id: str
    rule_version: str | None
    fired_at: UtcDatetime
    trigger_event_id: str | None
    run_id: str | None
    correlation_id: str
    record_id: str
    seq: int


class TriggerLink(Contract):
    """A trigger that is not a state change: a time, or another Home Assistant event."""

    link: Literal["trigger"] = "trigger"
    kind: Literal["time", "event"]
    event_id: str


Link: TypeAlias = Annotated[
    StateLink | CommandLink | RuleLink | TriggerLink, Field(discriminator="link")
]


class AuditChainV1(Payload):
    """The answer to `AuditWhyV1`: the links found, newest first, and how the search ended."""

    TYPE: ClassVar[str] = "audit.chain.v1"

    entity_id: str
    context_id: str | None
    state: str | None
    caused_by_ruby_core: bool
    """True when a command of Ruby Core is among the links."""
    complete: bool
    """False when a link is missing; ``end`` says which."""
    end: str | None
    """A last line: the entity was not changed by Ruby Core, or the link that is missing."""
    chain: tuple[Link, ...]
    """The links, the entity's own change first."""


# --- verify --------------------------------------------------------------------------------


class AuditVerifyV1(Payload):
    """Walk the store's hash chain and compare it with the head the sink published."""

    TYPE: ClassVar[str] = "audit.verify.v1"


class ChainBreak(Contract):
    """The first record where the chain does not hold, and why."""

    seq: int
    record_id: str | None
    """None when the record is missing altogether (rows removed from the end)."""
    reason: str


class AuditVerifiedV1(Payload):
    """The answer to `AuditVerifyV1`."""

    TYPE: ClassVar[str] = "audit.verified.v1"

    ok: bool
    """True when every record checked out and the store reaches the published head."""
    count: int
    """How many records were checked before the walk ended."""
    head_seq: int
    head_hash: str
    broken: ChainBreak | None = None
    """Where it is broken, when it is."""
    published_seq: int | None = None
    """The head the sink had published, which the store was compared with (None: none yet)."""


# --- errors --------------------------------------------------------------------------------


class FieldProblem(Contract):
    """One field of a request that was refused, and why (never its value)."""

    field: str
    message: str


class AuditApiErrorV1(Payload):
    """The sink could not answer: a bad request (``invalid-request``; ``errors`` names the
    fields), or its store or EVENTS could not be read just now (``unavailable``)."""

    TYPE: ClassVar[str] = "audit.api_error.v1"

    code: Literal["invalid-request", "unavailable"]
    detail: str
    errors: tuple[FieldProblem, ...] = ()
