"""``time``: the local time is ``after`` .. ``before`` and the day is one of ``weekday``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import TimeOfDay, one_or_many

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeConditionConfig(ConditionConfig):
    """Holds inside a daily window (which may wrap midnight) and on the listed days."""

    kind: Literal["time"]
    after: TimeOfDay | None = None
    """From this time (inclusive)."""
    before: TimeOfDay | None = None
    """Until this time (exclusive). ``after: "22:00"``, ``before: "06:00"`` spans midnight."""
    weekday: Annotated[
        tuple[Weekday, ...] | None, BeforeValidator(one_or_many), Field(min_length=1)
    ] = None
    """Days it holds (``mon`` .. ``sun``); every day when omitted."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.after is None and self.before is None and self.weekday is None:
            raise ValueError("expected at least one of 'after', 'before', 'weekday'")
        return self


@REGISTRY.register
class TimeCondition(Condition[TimeConditionConfig]):
    """Pure: reads the wall clock of ``now`` (the caller passes local time)."""

    CONFIG = TimeConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether ``now`` is inside the window and on an accepted day."""
        c = self.config
        if c.weekday is not None and WEEKDAYS[now.weekday()] not in c.weekday:
            return False
        clock = now.time().replace(tzinfo=None)
        if c.after is not None and c.before is not None and c.after > c.before:
            return clock >= c.after or clock < c.before
        return (c.after is None or clock >= c.after) and (c.before is None or clock < c.before)
