"""``state``: an entity's state (or one attribute) changed, optionally held ``for`` a while."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Duration, EntityIds, StateValues, in_any
from ruby_schemas.ha_events import EntityState


class StateTriggerConfig(TriggerConfig):
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


def watched_value(state: EntityState | None, attribute: str | None) -> str | None:
    """The state, or an attribute as text, of ``state``; ``None`` if absent."""
    if state is None:
        return None
    if attribute is None:
        return state.state
    value: JsonValue = state.attributes.get(attribute)
    return None if value is None else str(value)


@REGISTRY.register
class StateTrigger(Trigger[StateTriggerConfig]):
    """Matches a state change of a watched entity; the ``for`` wait runs in the engine."""

    CONFIG = StateTriggerConfig

    def matches(self, old: EntityState | None, new: EntityState | None) -> bool:
        """Whether a change from ``old`` to ``new`` (of a watched entity) fires this trigger.

        The watched value must really change (an attribute-only update does not fire a state
        trigger) and must leave a ``from`` value and reach a ``to`` value when those are given.
        """
        before = watched_value(old, self.config.attribute)
        after = watched_value(new, self.config.attribute)
        if before == after:
            return False
        return in_any(before, self.config.from_) and in_any(after, self.config.to)
