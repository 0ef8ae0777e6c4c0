"""``state``: every listed entity is in one of the listed states, optionally ``for`` a while."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.state import watched_value
from ruby_rules.processors.types import Duration, EntityIds, StateValues


class StateConditionConfig(ConditionConfig):
    """Holds when each entity's state (or ``attribute``) is one of ``state``."""

    kind: Literal["state"]
    entity_id: EntityIds
    """The entity or entities; all must match."""
    state: StateValues
    """The accepted states; any of them matches."""
    attribute: str | None = Field(default=None, min_length=1)
    """Compare this attribute instead of the state."""
    for_: Duration | None = Field(default=None, alias="for")
    """The state must have been unchanged at least this long (by ``last_changed``)."""


@REGISTRY.register
class StateCondition(Condition[StateConditionConfig]):
    """Pure: reads only the given states and time. An unknown entity does not match."""

    CONFIG = StateConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether every entity is in an accepted state (for long enough)."""
        c = self.config
        for entity_id in c.entity_id:
            current = states.get(entity_id)
            if current is None or watched_value(current, c.attribute) not in c.state:
                return False
            if c.for_ is not None and now - current.last_changed < c.for_:
                return False
        return True
