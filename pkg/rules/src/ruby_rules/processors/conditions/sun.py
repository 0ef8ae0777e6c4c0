"""``sun``: after or before today's sunrise or sunset (with offsets), as Home Assistant decides.

Home Assistant's semantics, which are subtle around midnight: the bounds are *today's* sunrise
and sunset (today in the engine's timezone), except that one already on yesterday's date (far
west of the timezone's meridian) is replaced by tomorrow's. ``after: sunset`` with
``before: sunrise`` is the night, holding before today's sunrise *or* after today's sunset;
every other pair must hold both ways (``after: sunrise``, ``before: sunset`` is the day).
A day with no sunrise or no sunset (polar day or night) makes a bound on it false.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, model_validator

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.sun import lower
from ruby_rules.processors.types import Offset
from ruby_rules.solar import HOME, Place, SunEvent, correction, home, sun_event

Event = Annotated[SunEvent, BeforeValidator(lower)]


class SunConditionConfig(ConditionConfig):
    """Holds after ``after`` (+ ``after_offset``) and before ``before`` (+ ``before_offset``)."""

    kind: Literal["sun"]
    after: Event | None = None
    """``sunrise`` or ``sunset``: holds from then on (today)."""
    after_offset: Offset = timedelta(0)
    """Added to ``after``: ``-00:30:00`` is half an hour before it."""
    before: Event | None = None
    """``sunrise`` or ``sunset``: holds until then (today)."""
    before_offset: Offset = timedelta(0)
    """Added to ``before``."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.after is None and self.before is None:
            raise ValueError("expected at least one of 'after', 'before'")
        return self


@REGISTRY.register
class SunCondition(Condition[SunConditionConfig]):
    """Reads the home's location from ``zone.home`` and the local time."""

    CONFIG = SunConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether ``now`` (local, aware) is within the bounds; `ValueError` without a home
        location (``zone.home`` has no ``latitude``/``longitude``)."""
        place = home(states)
        if place is None:
            raise ValueError(f"sun condition: {HOME} has no latitude and longitude")
        c = self.config
        wanted = {event for event in (c.after, c.before) if event is not None}
        events = {event: _today(place, event, now, states) for event in wanted}
        if c.after == "sunset" and c.before == "sunrise":  # the night, across midnight
            sunrise, sunset = events["sunrise"], events["sunset"]
            return (sunrise is not None and now < sunrise + c.before_offset) or (
                sunset is not None and now > sunset + c.after_offset
            )
        before = None if c.before is None else events[c.before]
        after = None if c.after is None else events[c.after]
        if (c.before is not None and before is None) or (c.after is not None and after is None):
            return False  # no sunrise (or sunset) today
        if before is not None and now > before + c.before_offset:
            return False
        return after is None or now >= after + c.after_offset


def _today(place: Place, event: SunEvent, now: datetime, states: States) -> datetime | None:
    """Today's ``event`` (on HA's own time when ``sun.sun`` gives it), or tomorrow's if
    today's falls on yesterday's date (local)."""
    today, shift = now.date(), correction(place, event, states)
    instant = sun_event(place, event, today)
    if instant is not None and today > (instant + shift).astimezone(now.tzinfo).date():
        instant = sun_event(place, event, today + timedelta(days=1))
    return None if instant is None else instant + shift
