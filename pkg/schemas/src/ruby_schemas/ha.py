"""What Home Assistant sends over its WebSocket API, read tolerantly.

These models ignore fields they do not declare, so a newer Home Assistant that adds a field
does not break the gateway. Tests can be strict instead: inside `with strict_ha():` (a context
variable, so it holds per thread and per asyncio task) an undeclared field is reported exactly
as `extra="forbid"` would report it (`extra_forbidden`, at its full path), which shows when our
models fall behind what Home Assistant really sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ruby_schemas.ha_events import EntityState, EventFiredV1, StateChangedV1
from ruby_schemas.primitives import EntityId, Id, JsonObject, UtcDatetime

_STRICT: ContextVar[bool] = ContextVar("ruby_schemas_strict_ha", default=False)


@contextlib.contextmanager
def strict_ha() -> Iterator[None]:
    """Within this block, Home Assistant models refuse fields they do not declare.

    Meant for tests. The setting is a context variable: it applies to the current thread or
    asyncio task (and tasks created inside the block) and is restored on exit.
    """
    token = _STRICT.set(True)
    try:
        yield
    finally:
        _STRICT.reset(token)


class HaModel(BaseModel):
    """A Home Assistant message: immutable, unknown fields ignored (refused under `strict_ha`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_unknown_when_strict(
        cls, value: Any, handler: ModelWrapValidatorHandler[Self]
    ) -> Self:
        if not _STRICT.get() or not isinstance(value, dict):
            return handler(value)
        unknown = [
            InitErrorDetails(type="extra_forbidden", loc=(str(key),), input=item)
            for key, item in value.items()
            if key not in cls.model_fields
        ]
        if not unknown:
            return handler(value)
        try:
            handler(value)
        except ValidationError as exc:
            # Report nested problems (their unknown fields included) together with ours.
            nested = [
                InitErrorDetails(
                    type=PydanticCustomError(error["type"], error["msg"]),
                    loc=error["loc"],
                    input=error["input"],
                )
                for error in exc.errors()
            ]
            raise ValidationError.from_exception_data(cls.__name__, [*nested, *unknown]) from None
        raise ValidationError.from_exception_data(cls.__name__, unknown)


class HaContext(HaModel):
    """Home Assistant's context: which user or automation caused something."""

    id: Id
    """The context id (refused here, at the gateway's edge, if it could not be part of a
    message id)."""
    parent_id: str | None = None
    """The parent context id, if any."""
    user_id: str | None = None
    """The user who caused it, if any."""


class HaState(HaModel):
    """A state object as in `get_states` and in `state_changed` events."""

    entity_id: EntityId
    """The entity, `domain.object_id`."""
    state: str
    """The state value."""
    attributes: JsonObject = Field(default_factory=dict)
    """The entity's attributes."""
    last_changed: UtcDatetime
    """When the state value last changed."""
    last_updated: UtcDatetime
    """When the state or attributes last changed."""
    last_reported: UtcDatetime | None = None
    """When the state was last reported (Home Assistant 2024.3 and later)."""
    context: HaContext
    """The context of the last change."""

    def to_entity_state(self) -> EntityState:
        """Return the part of this state that our contracts carry."""
        return EntityState(
            state=self.state,
            attributes=self.attributes,
            last_changed=self.last_changed,
            last_updated=self.last_updated,
        )


class HaStateChangedData(HaModel):
    """The `data` of a `state_changed` event."""

    entity_id: EntityId
    """The entity that changed."""
    old_state: HaState | None = None
    """The state before; absent or `None` when the entity was added."""
    new_state: HaState | None = None
    """The state after; absent or `None` when the entity was removed."""


class HaEvent(HaModel):
    """A bus event as delivered by `subscribe_events`."""

    event_type: str
    """The event type, such as `state_changed` or `call_service`."""
    data: JsonObject = Field(default_factory=dict)
    """The event data."""
    origin: str
    """`LOCAL` or `REMOTE`."""
    time_fired: UtcDatetime
    """When the event was fired."""
    context: HaContext
    """The event's context."""

    def to_payload(self) -> EventFiredV1:
        """Return this event as our `ha.event.v1` payload."""
        return EventFiredV1(
            event_type=self.event_type,
            data=self.data,
            origin=self.origin,
            time_fired=self.time_fired,
            context_id=self.context.id,
            context_parent_id=self.context.parent_id,
        )


class HaStateChangedEvent(HaModel):
    """A `state_changed` bus event, with its `data` read as state objects."""

    event_type: Literal["state_changed"]
    """Always `state_changed`."""
    data: HaStateChangedData
    """The entity and its old and new state."""
    origin: str
    """`LOCAL` or `REMOTE`."""
    time_fired: UtcDatetime
    """When the event was fired."""
    context: HaContext
    """The event's context."""

    def to_payload(self, *, reconciled: bool = False) -> StateChangedV1:
        """Return this event as our `ha.state_changed.v1` payload."""
        old, new = self.data.old_state, self.data.new_state
        return StateChangedV1(
            entity_id=self.data.entity_id,
            old_state=old.to_entity_state() if old else None,
            new_state=new.to_entity_state() if new else None,
            context_id=self.context.id,
            context_parent_id=self.context.parent_id,
            reconciled=reconciled,
        )
