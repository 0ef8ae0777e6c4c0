"""Commands to Home Assistant and their outcomes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Final, Literal, TypeAlias

from pydantic import Field

from ruby_schemas.base import Contract, Payload
from ruby_schemas.primitives import (
    HEADER_VALUE_CHAR,
    EntityId,
    Id,
    JsonObject,
    NonEmptyStr,
    Slug,
    UtcDatetime,
)

HA_EVENT_TYPE_MAX_LENGTH: Final = 64
"""Home Assistant refuses a longer event type (``max_length_exceeded``)."""

HaEventType: TypeAlias = Annotated[
    str, Field(pattern=f"^{HEADER_VALUE_CHAR}{{1,{HA_EVENT_TYPE_MAX_LENGTH}}}$")
]
"""An event type as Home Assistant accepts it on its bus: any text of 1 to 64 characters (dots
and spaces included), without control characters. It never becomes a subject token or a
header here (a `FireEventV1` travels on a fixed subject)."""


class ServiceTarget(Contract):
    """What a service call acts on; every list may be empty (services without a target)."""

    entity_id: tuple[EntityId, ...] = ()
    """Entities to act on."""
    device_id: tuple[NonEmptyStr, ...] = ()
    """Devices to act on."""
    area_id: tuple[NonEmptyStr, ...] = ()
    """Areas to act on."""


class TriggerChange(Contract):
    """The state change that started a rule's run: its entity, and when its state changed."""

    entity_id: EntityId
    """The entity whose state changed."""
    last_changed: UtcDatetime
    """The new state's `last_changed`, as Home Assistant reported it."""


class CallServiceV1(Payload):
    """Call one Home Assistant service; executed at most once per `command_id`."""

    TYPE: ClassVar[str] = "ha.call_service.v1"

    command_id: Id
    """Deterministic id of this command; the idempotency key for its execution (the gateway
    derives its outcome's and its audit record's message ids from it)."""
    domain: Slug
    """The service's domain, such as `light`."""
    service: Slug
    """The service name, such as `turn_on`."""
    target: ServiceTarget = Field(default_factory=ServiceTarget)
    """What the service acts on."""
    data: JsonObject = Field(default_factory=dict)
    """The service data, as JSON values."""
    deadline: UtcDatetime
    """After this instant the command is not executed; its outcome is `expired`."""
    backlog: Literal["latest", "all"] = "latest"
    """The rule's backlog policy. `latest`: if the gateway already executed a command created
    later on the same entities, this one is stale and is not executed (outcome `expired`,
    error code `superseded`). `all`: executed whatever came after it."""
    late_trigger: TriggerChange | None = None
    """Set when the run started from a state change that reached the engine late (a backlog:
    after an outage or a restart). Under `latest`, if Home Assistant has reported a later
    change of that entity's state by the time the gateway handles the command, the command
    is stale and is not executed (outcome `expired`, error code `superseded`)."""


class FireEventV1(Payload):
    """Fire one event on Home Assistant's bus; executed at most once per `command_id`.

    It travels on the command subject of `FIRE_EVENT_DOMAIN`.`FIRE_EVENT_SERVICE` (Home
    Assistant has no such service: the pair only names the command in subjects, outcomes and
    audit records), so COMMANDS, its consumer and every grant cover it unchanged.
    """

    TYPE: ClassVar[str] = "ha.fire_event.v1"

    command_id: Id
    """Deterministic id of this command, derived like a `CallServiceV1`'s; the idempotency key
    of its execution."""
    event_type: HaEventType
    """The event's type, such as `doorbell_rang`."""
    event_data: JsonObject = Field(default_factory=dict)
    """The event's data, as JSON values."""
    deadline: UtcDatetime
    """After this instant the event is not fired; its outcome is `expired`."""
    backlog: Literal["latest", "all"] = "latest"
    """The rule's backlog policy (see `CallServiceV1.backlog`); only `late_trigger` can make
    an event stale: it has no target entity for a newer command to supersede."""
    late_trigger: TriggerChange | None = None
    """As `CallServiceV1.late_trigger`: under `latest`, not fired if Home Assistant has
    reported a later change of that entity by the time the gateway handles it."""


FIRE_EVENT_DOMAIN: Final = "homeassistant"
"""The domain a `FireEventV1` is filed under (its subject, outcome and audit target)."""
FIRE_EVENT_SERVICE: Final = "fire_event"
"""The service name a `FireEventV1` is filed under: Home Assistant's WebSocket command."""


class Outcome(StrEnum):
    """How a command ended."""

    SUCCEEDED = "succeeded"
    """Home Assistant executed the call."""
    FAILED = "failed"
    """The call was attempted and Home Assistant or the connection reported an error."""
    REJECTED = "rejected"
    """Refused before execution: unknown service, invalid data, or not allowed."""
    EXPIRED = "expired"
    """The deadline passed before the call could be made."""
    DUPLICATE = "duplicate"
    """The command id had already been executed; this delivery did nothing."""


class CommandOutcomeV1(Payload):
    """The outcome of one command, published once the gateway is done with it."""

    TYPE: ClassVar[str] = "cmd.outcome.v1"

    command_id: Id
    """The command this outcome belongs to."""
    domain: Slug
    """The service's domain."""
    service: Slug
    """The service name."""
    outcome: Outcome
    """How the command ended."""
    error_code: str | None = None
    """A machine-readable error code (Home Assistant's, or ours) when it did not succeed."""
    error_message: str | None = None
    """A human-readable error message when it did not succeed."""
    ha_context_id: str | None = None
    """The Home Assistant context id of the call, when one was made."""
    attempts: int = Field(ge=0)
    """How many times the call was attempted (0 when it never was)."""
    finished_at: UtcDatetime
    """When the outcome was decided."""
