"""``state``: every (or, with ``match: any``, one) listed entity is in one of the listed states,
optionally ``for`` a while."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import BeforeValidator, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.state import watched_value
from ruby_rules.processors.types import Duration, EntityIds, one_or_many
from ruby_schemas.ha_events import EntityState


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, bool) else one_or_many(value)


def _state_or_flag(value: Any) -> str | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return str(value)  # as everywhere a state is written: `21` is the state "21"
    raise PydanticCustomError("string_type", "Input should be a valid string")


Wanted: TypeAlias = Annotated[
    tuple[Annotated[str | bool, PlainValidator(_state_or_flag)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1),
]
"""States as text (a number read as its text); ``true`` / ``false`` for an attribute."""


class StateConditionConfig(ConditionConfig):
    """Holds when each entity's state (or ``attribute``) is one of ``state``."""

    kind: Literal["state"]
    entity_id: EntityIds
    """The entity or entities; all must match (any one with ``match: any``)."""
    state: Wanted
    """The accepted states; any of them matches. With ``attribute``, ``true`` / ``false``
    match an attribute that is that flag (``is_volume_muted: true``), as in Home Assistant."""
    attribute: str | None = Field(default=None, min_length=1)
    """Compare this attribute instead of the state; an entity without it does not match."""
    for_: Duration | None = Field(default=None, alias="for")
    """The state must have been unchanged at least this long (by ``last_changed``)."""
    match: Literal["all", "any"] | None = None
    """``all`` (the default): every entity must match; ``any``: one is enough."""

    @model_validator(mode="after")
    def _flags_for_attributes(self) -> Self:
        if self.attribute is None and any(isinstance(value, bool) for value in self.state):
            raise ValueError("true / false compare an attribute only: quote a state ('on')")
        return self


@REGISTRY.register
class StateCondition(Condition[StateConditionConfig]):
    """Pure: reads only the given states and time. An unknown entity does not match."""

    CONFIG = StateConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether every entity (or one, ``match: any``) is in an accepted state long enough."""
        matched = (self._matches(states, entity_id, now) for entity_id in self.config.entity_id)
        return any(matched) if self.config.match == "any" else all(matched)

    def _matches(self, states: States, entity_id: str, now: datetime) -> bool:
        c = self.config
        current = states.get(entity_id)
        if current is None or not any(self._is(current, wanted) for wanted in c.state):
            return False
        return c.for_ is None or now - current.last_changed >= c.for_

    def _is(self, current: EntityState, wanted: str | bool) -> bool:
        attribute = self.config.attribute
        if isinstance(wanted, bool):
            return attribute is not None and current.attributes.get(attribute) is wanted
        return watched_value(current, attribute) == wanted
