"""``sun``: fires at sunrise or sunset at the home's location, shifted by an ``offset``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import TimedTrigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Offset
from ruby_rules.solar import HOME, SunEvent, home, next_sun_event


def lower(value: object) -> object:
    """``Sunset`` reads as ``sunset``, as Home Assistant reads it."""
    return value.lower() if isinstance(value, str) else value


class SunTriggerConfig(TriggerConfig):
    """Fires at each ``event`` (``sunrise`` or ``sunset``) plus ``offset`` (``-01:00:00`` is an
    hour before), at the location of ``zone.home`` (its ``latitude``/``longitude``)."""

    kind: Literal["sun"]
    event: Annotated[SunEvent, BeforeValidator(lower)]
    """``sunrise`` or ``sunset``."""
    offset: Offset = timedelta(0)
    """Added to the event's time: negative is before it."""


@REGISTRY.register
class SunTrigger(TimedTrigger[SunTriggerConfig]):
    """Timed, and watching ``zone.home``: a new location re-arms it; no location disarms it."""

    CONFIG = SunTriggerConfig

    def watch(self) -> Watch:
        """The home zone, and the clock."""
        return Watch(entities=(HOME,), timed=True)

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """The first ``event + offset`` strictly after ``after`` (so a negative offset whose
        instant today has passed gives tomorrow's); None without a home location, or when the
        sun does not rise or set within a year (at a pole)."""
        place = home(states)
        if place is None:
            return None
        return next_sun_event(place, self.config.event, after, self.config.offset)
