"""``state``: every (or, with ``match: any``, one) listed entity is in one of the listed states,
optionally ``for`` a while."""

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
    """The entity or entities; all must match (any one with ``match: any``)."""
    state: StateValues
    """The accepted states; any of them matches."""
    attribute: str | None = Field(default=None, min_length=1)
    """Compare this attribute instead of the state; an entity without it does not match."""
    for_: Duration | None = Field(default=None, alias="for")
    """The state must have been unchanged at least this long (by ``last_changed``)."""
    match: Literal["all", "any"] | None = None
    """``all`` (the default): every entity must match; ``any``: one is enough."""


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
        if current is None or watched_value(current, c.attribute) not in c.state:
            return False
        return c.for_ is None or now - current.last_changed >= c.for_
