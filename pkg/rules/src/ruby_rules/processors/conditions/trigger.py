"""``trigger``: holds when the run was started by one of the named triggers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Token, one_or_many


class TriggerConditionConfig(ConditionConfig):
    """Holds when the trigger that started the run has one of the ids in ``id``: a trigger's
    ``id``, or its position in ``triggers`` (``"0"``, ``"1"``...) when it has none, as in
    Home Assistant."""

    kind: Literal["trigger"]
    id: Annotated[tuple[Token, ...], BeforeValidator(one_or_many), Field(min_length=1)]
    """One trigger id or a list of them."""


@REGISTRY.register
class TriggerCondition(Condition[TriggerConditionConfig]):
    """Reads the run's trigger, so it overrides `holds`."""

    CONFIG = TriggerConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Outside any run there is no trigger: it does not hold."""
        return False

    def holds(self, ctx: Context) -> bool:
        """Whether ``ctx``'s trigger is one of the ids."""
        return ctx.trigger is not None and ctx.trigger.id in self.config.id
