"""Payloads the gateway publishes about Home Assistant: state changes and other bus events."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ruby_schemas.base import Contract, Payload
from ruby_schemas.primitives import EntityId, Id, JsonObject, NonEmptyStr, UtcDatetime


class EntityState(Contract):
    """An entity's state at one moment, as Home Assistant reported it."""

    state: str
    """The state value, such as `on`, `off`, `21.5` or `unavailable`."""
    attributes: JsonObject = Field(default_factory=dict)
    """The entity's attributes, as JSON values."""
    last_changed: UtcDatetime
    """When `state` last changed."""
    last_updated: UtcDatetime
    """When `state` or `attributes` last changed."""


class StateChangedV1(Payload):
    """An entity changed state, live from the event bus or found by reconciliation."""

    TYPE: ClassVar[str] = "ha.state_changed.v1"

    entity_id: EntityId
    """The entity, `domain.object_id`."""
    old_state: EntityState | None
    """The state before; `None` when the entity was just added."""
    new_state: EntityState | None
    """The state after; `None` when the entity was removed."""
    context_id: Id
    """Home Assistant's context id of the change (the JetStream de-duplication key)."""
    context_parent_id: str | None = None
    """The parent context id, when the change was caused by another context."""
    reconciled: bool = False
    """True when found by diffing `get_states` after a reconnect rather than seen live."""


class EventFiredV1(Payload):
    """A Home Assistant bus event other than `state_changed`."""

    TYPE: ClassVar[str] = "ha.event.v1"

    event_type: NonEmptyStr
    """Home Assistant's event type, such as `call_service` or `zha_event`."""
    data: JsonObject = Field(default_factory=dict)
    """The event data, as JSON values."""
    origin: NonEmptyStr
    """Where the event originated: `LOCAL` or `REMOTE`."""
    time_fired: UtcDatetime
    """When Home Assistant fired the event."""
    context_id: Id
    """Home Assistant's context id of the event (part of its message id)."""
    context_parent_id: str | None = None
    """The parent context id, if any."""
