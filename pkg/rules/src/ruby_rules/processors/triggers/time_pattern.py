"""``time_pattern``: fires when the clock matches, like ``minutes: "/5"`` (every 5 minutes)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, model_validator

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import TimedTrigger, TriggerConfig
from ruby_rules.processors.registry import REGISTRY

_PATTERN = re.compile(r"\*|/?\d{1,2}")


def _pattern(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _PATTERN.fullmatch(value):
        return value
    raise ValueError(
        f"invalid time pattern {value!r}: expected '*', a number such as 5, or '/N' (every N)"
    )


Pattern = Annotated[str, BeforeValidator(_pattern)]


def _fits(pattern: str | None, value: int, default: str) -> bool:
    spec = default if pattern is None else pattern
    if spec == "*":
        return True
    if spec.startswith("/"):
        return value % int(spec[1:]) == 0
    return value == int(spec)


class TimePatternTriggerConfig(TriggerConfig):
    """Fires each second the local clock fits ``hours``, ``minutes`` and ``seconds``.

    Each is ``*`` (any), a number, or ``/N`` (divisible by N). As in Home Assistant, fields
    smaller than the largest one given default to 0 and larger ones to ``*``.
    """

    kind: Literal["time_pattern"]
    hours: Pattern | None = None
    """Hours 0-23."""
    minutes: Pattern | None = None
    """Minutes 0-59."""
    seconds: Pattern | None = None
    """Seconds 0-59."""

    @model_validator(mode="after")
    def _in_range(self) -> Self:
        if self.hours is None and self.minutes is None and self.seconds is None:
            raise ValueError("expected at least one of 'hours', 'minutes', 'seconds'")
        for name, limit in (("hours", 24), ("minutes", 60), ("seconds", 60)):
            spec: str | None = getattr(self, name)
            if spec is None or spec == "*":
                continue
            number = int(spec.lstrip("/"))
            if (spec.startswith("/") and not 0 < number < limit) or number >= limit:
                raise ValueError(f"{name} {spec!r} is out of range (0-{limit - 1})")
        return self


@REGISTRY.register
class TimePatternTrigger(TimedTrigger[TimePatternTriggerConfig]):
    """Matches clock readings; the engine's scheduler asks it once per candidate second."""

    CONFIG = TimePatternTriggerConfig

    def matches(self, now: datetime) -> bool:
        """Whether the wall-clock reading ``now`` fits the pattern (to the second)."""
        c = self.config
        if c.seconds is not None:
            defaults = ("*", "*", "*")
        elif c.minutes is not None:
            defaults = ("*", "*", "0")
        else:
            defaults = ("*", "0", "0")
        return (
            _fits(c.hours, now.hour, defaults[0])
            and _fits(c.minutes, now.minute, defaults[1])
            and _fits(c.seconds, now.second, defaults[2])
        )

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime:
        """The first second strictly after ``after`` that fits the pattern (within 24 hours)."""
        candidate = after.replace(microsecond=0) + timedelta(seconds=1)
        step = timedelta(seconds=1)
        c = self.config
        if c.seconds is None:  # fires on whole minutes: step by minutes
            if candidate.second:
                candidate += timedelta(seconds=60 - candidate.second)
            step = timedelta(minutes=1)
        for _ in range(24 * 3600):
            if self.matches(candidate):
                return candidate
            candidate += step
        raise ValueError(f"time pattern {c.model_dump(exclude_none=True)} never fires")
