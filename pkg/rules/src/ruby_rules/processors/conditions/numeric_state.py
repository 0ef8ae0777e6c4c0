"""``numeric_state``: every listed entity's value lies in the range ``above`` .. ``below``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.numeric import NumericRange
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityIds


class NumericStateConditionConfig(ConditionConfig, NumericRange):
    """Holds when each entity's state (or ``attribute``, or ``value_template``'s value) is a
    number inside the range; a bound is a number or an entity's numeric state."""

    kind: Literal["numeric_state"]
    entity_id: EntityIds
    """The entity or entities; all must be in range."""
    attribute: str | None = Field(default=None, min_length=1)
    """Compare this attribute instead of the state."""


@REGISTRY.register
class NumericStateCondition(Condition[NumericStateConditionConfig]):
    """Pure. An unknown entity, a missing attribute, a non-numeric value (``unavailable``) or
    a bound entity that is missing or not a number does not match, as in Home Assistant; a
    ``value_template`` that fails raises (the run fails with its reason)."""

    CONFIG = NumericStateConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether it holds outside any run (``trigger`` reads as None in a template)."""
        return self.holds(Context(states=states, now=now))

    def holds(self, ctx: Context) -> bool:
        """Whether every entity's value is a finite number inside the range in ``ctx``."""
        c = self.config
        return all(
            c.in_range(entity_id, ctx.states.get(entity_id), c.attribute, ctx)
            for entity_id in c.entity_id
        )
