"""``time``: fires at one or more wall-clock times every day."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import TimedTrigger, TriggerConfig
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import TimeOfDay, one_or_many


class TimeTriggerConfig(TriggerConfig):
    """Fires every day at each time in ``at`` (``HH:MM`` or ``HH:MM:SS``, local time)."""

    kind: Literal["time"]
    at: Annotated[tuple[TimeOfDay, ...], BeforeValidator(one_or_many), Field(min_length=1)]
    """One time or a list of times."""


@REGISTRY.register
class TimeTrigger(TimedTrigger[TimeTriggerConfig]):
    """Computes its next firing time; the engine's durable timers wait for it."""

    CONFIG = TimeTriggerConfig

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime:
        """The first firing time strictly after ``after``, in ``after``'s timezone."""
        candidates = [
            datetime.combine(after.date() + timedelta(days=day), at, after.tzinfo)
            for day in (0, 1)
            for at in self.config.at
        ]
        return min(candidate for candidate in candidates if candidate > after)

    def times(self) -> tuple[time, ...]:
        """The configured times, sorted."""
        return tuple(sorted(self.config.at))
