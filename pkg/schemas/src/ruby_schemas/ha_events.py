"""Payloads the gateway publishes about Home Assistant: state changes, other bus events, and
Home Assistant starting or shutting down."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

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


HaLifecycleEvent = Literal["start", "shutdown"]
"""What happened to Home Assistant: it started, or it shut down."""

LIFECYCLE_EVENT_TYPES: Final[dict[str, str]] = {
    "start": "homeassistant.start",
    "shutdown": "homeassistant.shutdown",
}
"""The event type under which the engine offers each `HaLifecycleV1` to its triggers. A dot
keeps them apart from every bus event type a rule can name (those are subject tokens)."""


class HaLifecycleV1(Payload):
    """Home Assistant started, or shut down, as the gateway saw it (ADR-0032).

    Published once per Home Assistant run and event: its message id is
    ``ha.lifecycle.<event>.<boot>``, and the gateway records the run it announced.
    """

    TYPE: ClassVar[str] = "ha.lifecycle.v1"

    event: HaLifecycleEvent
    """``start`` or ``shutdown``."""
    boot: UtcDatetime
    """Which run of Home Assistant this is about: the earliest ``last_changed`` among its
    states when the gateway first saw that run (every state is written anew when Home
    Assistant starts), or the start's ``time_fired`` when it had no state yet."""
    at: UtcDatetime
    """When it happened, as near as the gateway knows: a start, the ``time_fired`` of
    ``homeassistant_started`` when seen, else when the gateway found the run; a shutdown, when
    Home Assistant closed the gateway's connection."""
    seen: Literal["live", "reconnect"]
    """``live``: the gateway saw it happen (the start event, or Home Assistant closing the
    connection); ``reconnect``: it found a new run when it connected again."""
    ha_version: str = ""
    """Home Assistant's version, as its WebSocket API reported it."""

    @property
    def event_type(self) -> str:
        """The event type the engine offers it to triggers under (`LIFECYCLE_EVENT_TYPES`)."""
        return LIFECYCLE_EVENT_TYPES[self.event]
