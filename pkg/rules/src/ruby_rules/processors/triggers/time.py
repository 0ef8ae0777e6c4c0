"""``time``: fires at wall-clock times every day, or at the time an entity holds.

An item of ``at`` is a time (``"07:00"``), or an entity whose state is the time, as Home
Assistant reads it: an ``input_datetime`` with a time only fires every day at it, with a date
and a time once at that moment, with a date only once at that midnight; a ``sensor`` whose
``device_class`` is ``timestamp`` fires once at its instant. An entity item may carry an
``offset`` (``{entity_id: sensor.phone_next_alarm, offset: "-00:05:00"}``). The trigger watches
its entities: a new value re-arms it; no valid value (``unknown``, a past moment) leaves
that item out.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import TimedTrigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import (
    EntityId,
    Offset,
    TimeOfDay,
    is_entity_id,
    one_or_many,
    parse_time_of_day,
)
from ruby_schemas.ha_events import EntityState

_DOMAINS = ("input_datetime", "sensor")


def _time_domain(value: str) -> str:
    if value.partition(".")[0] not in _DOMAINS:
        raise ValueError(f"{value}: expected an input_datetime or a sensor entity")
    return value


class EntityTime(BaseModel):
    """A time held by an entity, shifted by ``offset``."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_timedelta="float")

    entity_id: Annotated[EntityId, AfterValidator(_time_domain)]
    """An ``input_datetime``, or a ``sensor`` with ``device_class: timestamp``."""
    offset: Offset = timedelta(0)
    """Added to its time: ``-00:05:00`` is five minutes before."""


def _at_item(value: Any) -> Any:
    if is_entity_id(value):
        return EntityTime(entity_id=value)
    if isinstance(value, str):
        return parse_time_of_day(value)
    return value


AtItem = Annotated[TimeOfDay | EntityTime, BeforeValidator(_at_item)]


def _items(value: Any) -> Any:
    return [value] if isinstance(value, dict) else one_or_many(value)


class TimeTriggerConfig(TriggerConfig):
    """Fires at each item of ``at``: a local time (``HH:MM`` or ``HH:MM:SS``) every day, or the
    time an entity holds (``input_datetime.wake_up``, ``{entity_id: ..., offset: ...}``)."""

    kind: Literal["time"]
    at: Annotated[tuple[AtItem, ...], BeforeValidator(_items), Field(min_length=1)]
    """One item or a list of them."""


@REGISTRY.register
class TimeTrigger(TimedTrigger[TimeTriggerConfig]):
    """Computes its next firing time; the engine's durable timers wait for it."""

    CONFIG = TimeTriggerConfig

    def watch(self) -> Watch:
        """The clock, and the entities whose time it reads (a new value re-arms it)."""
        entities = tuple(item.entity_id for item in self.config.at if isinstance(item, EntityTime))
        return Watch(entities=tuple(dict.fromkeys(entities)), timed=True)

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """The first instant strictly after ``after`` (in its timezone) of any item; None when
        only entity items remain and none holds a time to come."""
        candidates = [
            candidate
            for item in self.config.at
            if (candidate := _next(item, after, states)) is not None
        ]
        return min(candidates, default=None)


def _next(item: time | EntityTime, after: datetime, states: States) -> datetime | None:
    if isinstance(item, time):
        return _daily(item, after)
    state = states.get(item.entity_id)
    if state is None:
        return None
    if item.entity_id.startswith("sensor."):
        instant = _timestamp(state)
        return None if instant is None else _once(instant + item.offset, after)
    held = _held(state.state)
    if isinstance(held, time):  # a time only: every day, the offset wrapping round midnight
        shifted = datetime.combine(after.date(), held) + item.offset
        return _daily(shifted.time(), after)
    if isinstance(held, datetime):  # a date and a time, or a date at midnight: once
        return _once(held.replace(tzinfo=after.tzinfo) + item.offset, after)
    return None


def _daily(at: time, after: datetime) -> datetime:
    today = datetime.combine(after.date(), at, after.tzinfo)
    return (
        today
        if today > after
        else datetime.combine(after.date() + timedelta(days=1), at, after.tzinfo)
    )


def _once(instant: datetime, after: datetime) -> datetime | None:
    return instant if instant > after else None


def _held(value: str) -> time | datetime | None:
    """An ``input_datetime``'s state: ``HH:MM:SS``, ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD``
    (naive, local); None for anything else (``unknown``)."""
    try:
        if len(value) == 8:
            return time.fromisoformat(value)
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time())
        if len(value) == 19:
            return datetime.fromisoformat(value)
    except ValueError:
        return None
    return None


def _timestamp(state: EntityState) -> datetime | None:
    """A timestamp sensor's instant (aware); None if it is not one or holds none."""
    if state.attributes.get("device_class") != "timestamp":
        return None
    try:
        instant = datetime.fromisoformat(state.state)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None
