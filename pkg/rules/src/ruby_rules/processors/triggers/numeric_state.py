"""``numeric_state``: an entity's numeric value crossed into a range, optionally ``for`` a while."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.numeric import NumericRange
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.entity import EntityTrigger, EntityTriggerConfig, watched_value
from ruby_rules.processors.types import Duration, EntityIds
from ruby_schemas.ha_events import EntityState


class NumericStateTriggerConfig(EntityTriggerConfig, NumericRange):
    """Fires when the state (or ``attribute``) enters the range ``above`` .. ``below``."""

    kind: Literal["numeric_state"]
    entity_id: EntityIds
    """The entity or entities watched."""
    attribute: str | None = Field(default=None, min_length=1)
    """Watch this attribute instead of the state."""
    for_: Duration | None = Field(default=None, alias="for")
    """The value must stay in range this long before the trigger fires."""


@REGISTRY.register
class NumericStateTrigger(EntityTrigger[NumericStateTriggerConfig]):
    """Matches a crossing into the range, not every change while inside it."""

    CONFIG = NumericStateTriggerConfig

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """True when ``new`` is in range and ``old`` was not (or was absent or non-numeric)."""
        attribute = self.config.attribute
        return self.config.within(watched_value(new, attribute)) and not self.config.within(
            watched_value(old, attribute)
        )

    def accepts(self, value: str | None) -> bool:
        """A ``for`` hold keeps a value inside the range."""
        return self.config.within(value)
