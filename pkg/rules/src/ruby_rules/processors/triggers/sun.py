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
from ruby_rules.solar import HOME, SUN, SunEvent, correction, home, next_sun_event


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
    """Timed, and watching ``zone.home`` (a new location re-arms it; no location disarms it)
    and ``sun.sun`` (HA's own times, when loaded, calibrate ours)."""

    CONFIG = SunTriggerConfig

    def watch(self) -> Watch:
        """The home zone, HA's sun entity, and the clock."""
        return Watch(entities=(HOME, SUN), timed=True)

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """The first ``event + offset`` strictly after ``after`` (so a negative offset whose
        instant today has passed gives tomorrow's), the event moved onto HA's own time when
        ``sun.sun`` gives it; None without a home location, or when the sun does not rise or
        set within a year (at a pole)."""
        place = home(states)
        if place is None:
            return None
        event = self.config.event
        shift = self.config.offset + correction(place, event, states)
        return next_sun_event(place, event, after, shift)
