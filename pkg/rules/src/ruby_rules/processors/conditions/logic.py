"""``and``, ``or``, ``not``: combine other conditions of any kind."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyCondition


class AndConditionConfig(ConditionConfig):
    """Holds when all of ``conditions`` hold."""

    kind: Literal["and"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions combined."""


class OrConditionConfig(ConditionConfig):
    """Holds when any of ``conditions`` holds."""

    kind: Literal["or"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions combined."""


class NotConditionConfig(ConditionConfig):
    """Holds when none of ``conditions`` holds."""

    kind: Literal["not"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions negated."""


def _results(configs: tuple[ConditionConfig, ...], ctx: Context) -> list[bool]:
    # Evaluated eagerly (no short-circuit) so a trace can show every inner result later.
    # `holds`, not `evaluate`: an inner condition may read the trigger.
    return [REGISTRY.condition(config).holds(ctx) for config in configs]


@REGISTRY.register
class AndCondition(Condition[AndConditionConfig]):
    """All of its conditions."""

    CONFIG = AndConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """True when every inner condition holds, outside any run (no trigger)."""
        return self.holds(Context(states=states, now=now))

    def holds(self, ctx: Context) -> bool:
        """True when every inner condition holds in ``ctx``."""
        return all(_results(self.config.conditions, ctx))


@REGISTRY.register
class OrCondition(Condition[OrConditionConfig]):
    """Any of its conditions."""

    CONFIG = OrConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """True when at least one inner condition holds, outside any run (no trigger)."""
        return self.holds(Context(states=states, now=now))

    def holds(self, ctx: Context) -> bool:
        """True when at least one inner condition holds in ``ctx``."""
        return any(_results(self.config.conditions, ctx))


@REGISTRY.register
class NotCondition(Condition[NotConditionConfig]):
    """None of its conditions."""

    CONFIG = NotConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """True when no inner condition holds, outside any run (no trigger)."""
        return self.holds(Context(states=states, now=now))

    def holds(self, ctx: Context) -> bool:
        """True when no inner condition holds in ``ctx``."""
        return not any(_results(self.config.conditions, ctx))
