"""``time``: the local time is ``after`` .. ``before`` and the day is one of ``weekday``.

A bound is a time of day or, as in Home Assistant, an entity holding one: an
``input_datetime`` (its ``hour``, ``minute``, ``second`` attributes; a date-only one reads
as 23:59:59), a ``time`` entity (``HH:MM:SS``), or a ``sensor`` whose device class is
``timestamp`` (its local time of day; the date is ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from typing import Annotated, Any, Final, Literal, Self, TypeAlias

from pydantic import BeforeValidator, Field, JsonValue, model_validator

from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import is_entity_id, one_or_many, parse_time_of_day

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK_DOMAINS: Final = ("input_datetime", "time", "sensor")
"""The domains whose entity may bound a time condition, as Home Assistant accepts them."""
_START, _END = time(0), time(23, 59, 59, 999999)
_TIMESTAMP_CLASSES: Final = frozenset({"timestamp", "uptime"})
_NO_VALUE: Final = frozenset({"unavailable", "unknown"})


def _clock_bound(value: Any) -> Any:
    if is_entity_id(value) and value.partition(".")[0] in CLOCK_DOMAINS:
        return value
    if is_entity_id(value):
        domains = ", ".join(CLOCK_DOMAINS)
        raise ValueError(f"a time bounded by an entity needs one of {domains}; got {value!r}")
    return parse_time_of_day(value)


ClockBound: TypeAlias = Annotated[time | str, BeforeValidator(_clock_bound)]
"""``HH:MM[:SS]``, or an ``input_datetime``, ``time`` or timestamp ``sensor`` entity."""


class TimeConditionConfig(ConditionConfig):
    """Holds inside a daily window (which may wrap midnight) and on the listed days."""

    kind: Literal["time"]
    after: ClockBound | None = None
    """From this time (inclusive), or the time an entity holds."""
    before: ClockBound | None = None
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
    """Pure: reads the wall clock of ``now`` (the caller passes local time) and, for a bound
    entity, its state. A bound entity that is missing, ``unavailable`` or holds no time makes
    the condition fail, as in Home Assistant."""

    CONFIG = TimeConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether ``now`` is inside the window and on an accepted day."""
        c = self.config
        if c.weekday is not None and WEEKDAYS[now.weekday()] not in c.weekday:
            return False
        after = _START if c.after is None else clock_of(c.after, states, now)
        before = _END if c.before is None else clock_of(c.before, states, now)
        if after is None or before is None:
            return False
        clock = now.time().replace(tzinfo=None)
        if after < before:
            return after <= clock < before
        return not before <= clock < after


def clock_of(bound: time | str, states: States, now: datetime) -> time | None:
    """The time of day ``bound`` stands for (its entity's, read from ``states``, local to
    ``now``'s timezone); None when the entity holds none."""
    if isinstance(bound, time):
        return bound
    entity = states.get(bound)
    if entity is None:
        return None
    if bound.startswith("input_datetime."):
        return _time(entity.attributes.get(name, default) for name, default in _INPUT_PARTS)
    if entity.state in _NO_VALUE:
        return None
    if bound.startswith("time."):
        return _parsed(entity.state, "%H:%M:%S")
    if entity.attributes.get("device_class") in _TIMESTAMP_CLASSES:
        try:
            stamp = datetime.fromisoformat(entity.state)
        except ValueError:
            return None
        local = stamp.replace(tzinfo=now.tzinfo) if stamp.tzinfo is None else stamp
        return local.astimezone(now.tzinfo).time().replace(tzinfo=None)
    return None


_INPUT_PARTS: Final = (("hour", 23), ("minute", 59), ("second", 59))


def _time(parts: Iterable[JsonValue]) -> time | None:
    found = [part for part in parts if isinstance(part, int) and not isinstance(part, bool)]
    if len(found) != len(_INPUT_PARTS):
        return None
    try:
        return time(found[0], found[1], found[2])
    except ValueError:  # out of range
        return None


def _parsed(text: str, pattern: str) -> time | None:
    try:
        return datetime.strptime(text, pattern).time()
    except ValueError:
        return None
