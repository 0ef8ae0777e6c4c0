"""``state``: an entity's state (or one attribute) changed, optionally held ``for`` a while."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.entity import EntityTrigger, EntityTriggerConfig
from ruby_rules.processors.triggers.entity import watched_value as watched_value  # re-exported
from ruby_rules.processors.types import Duration, EntityIds, StateValues, in_any
from ruby_schemas.ha_events import EntityState


class StateTriggerConfig(EntityTriggerConfig):
    """Fires when an entity's state, or ``attribute``, changes ``from`` one value ``to`` another."""

    kind: Literal["state"]
    entity_id: EntityIds
    """The entity or entities watched."""
    from_: StateValues | None = Field(default=None, alias="from")
    """The previous value must be one of these; any when omitted."""
    to: StateValues | None = None
    """The new value must be one of these; any when omitted."""
    attribute: str | None = Field(default=None, min_length=1)
    """Watch this attribute instead of the state."""
    for_: Duration | None = Field(default=None, alias="for")
    """The new value must hold this long before the trigger fires (a durable timer)."""


@REGISTRY.register
class StateTrigger(EntityTrigger[StateTriggerConfig]):
    """Matches a state change of a watched entity; the ``for`` wait runs in the engine."""

    CONFIG = StateTriggerConfig

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether a change from ``old`` to ``new`` (of a watched entity) fires this trigger.

        The watched value must really change (an attribute-only update does not fire a state
        trigger) and must leave a ``from`` value and reach a ``to`` value when those are given.
        """
        before = watched_value(old, self.config.attribute)
        after = watched_value(new, self.config.attribute)
        if before == after:
            return False
        return in_any(before, self.config.from_) and in_any(after, self.config.to)

    def accepts(self, value: str | None) -> bool:
        """A ``for`` hold keeps any value without ``to``, else one of the ``to`` values."""
        wanted = self.config.to
        return value is not None if wanted is None else value in wanted
