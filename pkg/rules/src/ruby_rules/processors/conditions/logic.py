"""``and``, ``or``, ``not``: combine other conditions of any kind."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyCondition


class CombinedConfig(ConditionConfig):
    """A combination of inner conditions. ``conditions`` is declared by each kind (type
    checking sees it here), so each keeps its own field order and documentation."""

    if TYPE_CHECKING:
        conditions: tuple[AnyCondition, ...]


class AndConditionConfig(CombinedConfig):
    """Holds when all of ``conditions`` hold."""

    kind: Literal["and"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions combined."""


class OrConditionConfig(CombinedConfig):
    """Holds when any of ``conditions`` holds."""

    kind: Literal["or"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions combined."""


class NotConditionConfig(CombinedConfig):
    """Holds when none of ``conditions`` holds."""

    kind: Literal["not"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """The conditions negated."""


L = TypeVar("L", bound=CombinedConfig)


class _Combined(Condition[L]):
    """Builds its inner conditions once, when it is built."""

    def __init__(self, config: L) -> None:
        super().__init__(config)
        self.conditions = REGISTRY.conditions(config.conditions)

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether it holds outside any run (no trigger)."""
        return self.holds(Context(states=states, now=now))

    def _results(self, ctx: Context) -> list[bool]:
        # Evaluated eagerly (no short-circuit) so a trace can show every inner result later.
        # `holds`, not `evaluate`: an inner condition may read the trigger.
        return [condition.holds(ctx) for condition in self.conditions]


@REGISTRY.register
class AndCondition(_Combined[AndConditionConfig]):
    """All of its conditions."""

    CONFIG = AndConditionConfig

    def holds(self, ctx: Context) -> bool:
        """True when every inner condition holds in ``ctx``."""
        return all(self._results(ctx))


@REGISTRY.register
class OrCondition(_Combined[OrConditionConfig]):
    """Any of its conditions."""

    CONFIG = OrConditionConfig

    def holds(self, ctx: Context) -> bool:
        """True when at least one inner condition holds in ``ctx``."""
        return any(self._results(ctx))


@REGISTRY.register
class NotCondition(_Combined[NotConditionConfig]):
    """None of its conditions."""

    CONFIG = NotConditionConfig

    def holds(self, ctx: Context) -> bool:
        """True when no inner condition holds in ``ctx``."""
        return not any(self._results(ctx))
