"""``numeric_state``: every listed entity's value lies in the range ``above`` .. ``below``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.numeric import NumericRange
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.state import watched_value
from ruby_rules.processors.types import EntityIds


class NumericStateConditionConfig(ConditionConfig, NumericRange):
    """Holds when each entity's state (or ``attribute``) is a number inside the range."""

    kind: Literal["numeric_state"]
    entity_id: EntityIds
    """The entity or entities; all must be in range."""
    attribute: str | None = Field(default=None, min_length=1)
    """Compare this attribute instead of the state."""


@REGISTRY.register
class NumericStateCondition(Condition[NumericStateConditionConfig]):
    """Pure. An unknown entity or a non-numeric value (``unavailable``) does not match."""

    CONFIG = NumericStateConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether every entity's value is a finite number inside the range."""
        return all(
            self.config.within(watched_value(states.get(entity_id), self.config.attribute))
            for entity_id in self.config.entity_id
        )
