"""``state``: an entity's state (or one attribute) changed, optionally held ``for`` a while."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.entity import EntityTrigger, EntityTriggerConfig
from ruby_rules.processors.triggers.entity import watched_value as watched_value  # re-exported
from ruby_rules.processors.types import Duration, EntityIds, Flag, StateValues, in_any
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
    not_from: StateValues | None = None
    """The previous value must be none of these (instead of ``from``)."""
    not_to: StateValues | None = None
    """The new value must be none of these (instead of ``to``)."""
    attribute: str | None = Field(default=None, min_length=1)
    """Watch this attribute instead of the state."""
    for_: Duration | None = Field(default=None, alias="for")
    """The new value must hold this long before the trigger fires (a durable timer)."""
    attributes_too: Flag | None = None
    """Also fire when only an attribute changes: every change of the entity, as Home
    Assistant's state trigger given only ``entity_id``. Alone, without the fields above."""

    @model_validator(mode="after")
    def _one_of_each(self) -> Self:
        if self.from_ is not None and self.not_from is not None:
            raise ValueError("give 'from' or 'not_from', not both")
        if self.to is not None and self.not_to is not None:
            raise ValueError("give 'to' or 'not_to', not both")
        narrowed = (self.from_, self.to, self.not_from, self.not_to, self.attribute, self.for_)
        if self.attributes_too and any(field is not None for field in narrowed):
            raise ValueError(
                "'attributes_too' fires on every change of the entity: it takes no from, to, "
                "not_from, not_to, attribute or for"
            )
        return self


@REGISTRY.register
class StateTrigger(EntityTrigger[StateTriggerConfig]):
    """Matches a state change of a watched entity; the ``for`` wait runs in the engine."""

    CONFIG = StateTriggerConfig

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether a change from ``old`` to ``new`` (of a watched entity) fires this trigger.

        The watched value must really change (an attribute-only update does not fire a state
        trigger), must leave a ``from`` value and reach a ``to`` value when those are given,
        and must not leave a ``not_from`` value nor reach a ``not_to`` value (as in Home
        Assistant, an entity that appears has left no ``not_from`` value).
        """
        c = self.config
        if c.attributes_too:
            return _differ(old, new)
        before = watched_value(old, c.attribute)
        after = watched_value(new, c.attribute)
        if before == after:
            return False
        return (
            in_any(before, c.from_)
            and in_any(after, c.to)
            and before not in (c.not_from or ())
            and after not in (c.not_to or ())
        )

    def accepts(self, value: str | None) -> bool:
        """A ``for`` hold keeps any value without ``to``, else one of the ``to`` values, and
        never a ``not_to`` value."""
        if value is None or value in (self.config.not_to or ()):
            return False
        return in_any(value, self.config.to)


def _differ(old: EntityState | None, new: EntityState | None) -> bool:
    """Whether the entity appeared, went, or changed its state or an attribute."""
    if old is None or new is None:
        return old is not new
    return old.state != new.state or old.attributes != new.attributes
