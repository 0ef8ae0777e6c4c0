"""Time in templates, as Home Assistant has it, read from the run and never from a clock.

``now()`` is the run's time (`ruby_rules.context.Context.now`, aware, in the engine's time
zone), so a rule gives the same result when a run is repeated or replayed; ``utcnow()`` is
the same instant in UTC. The rest converts: ``today_at('07:00')``, ``as_timestamp(x)``,
``as_datetime(x)``, ``as_local(x)``, ``relative_time(x)``, ``timestamp_custom(...)``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from reprlib import Repr
from typing import Any, Final

from ruby_rules.jinja import scope

MISSING: Final = object()
"""The default of a ``default`` argument: no default was given."""
DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def _short_repr() -> Repr:
    short = Repr()  # keyword arguments only from Python 3.12
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = 60, 60, 5, 5, 2
    return short


_SHORT: Final = _short_repr()


def no_default(name: str, value: Any) -> ValueError:
    """The error of a conversion that failed without a default, as Home Assistant words it."""
    shown = _SHORT.repr(value)
    return ValueError(
        f"{name} got invalid input {shown} and no default was given: expected a default, "
        f"such as {name}(x, 0)"
    )


def _zone() -> tzinfo:
    return scope.run().now.tzinfo or UTC


def now() -> datetime:
    """The run's time, local."""
    return scope.run().now


def utcnow() -> datetime:
    """The run's time, in UTC."""
    return scope.run().now.astimezone(UTC)


def as_local(value: datetime) -> datetime:
    """``value`` in the local time zone (a naive one is taken as local)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_zone())
    return value.astimezone(_zone())


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date and time (``T`` or a space between them), or None."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def today_at(clock: str = "") -> datetime:
    """Today (the run's day) at ``HH:MM[:SS]``, local; midnight without an argument."""
    today = scope.run().now.astimezone(_zone()).date()
    if not clock:
        return datetime.combine(today, time(), _zone())
    try:
        parsed = time.fromisoformat(clock.strip()) if clock.count(":") in (1, 2) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"could not convert {type(clock).__name__} to datetime: {clock!r}")
    return datetime.combine(today, parsed, _zone())


def as_timestamp(value: Any, default: Any = MISSING) -> Any:
    """Seconds since the epoch of a datetime or a date-and-time text."""
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if isinstance(parsed, datetime):
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=_zone())).timestamp()
    if default is MISSING:
        raise no_default("as_timestamp", value)
    return default


def as_datetime(value: Any, default: Any = MISSING) -> Any:
    """A datetime from a datetime, a date (midnight), a UNIX timestamp or ISO text.

    Text that is no date gives None without a default, as in Home Assistant.
    """
    if type(value) is datetime:
        return value
    if type(value) is date:
        return datetime.combine(value, time())
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        pass
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is not None:
        return parsed
    if default is not MISSING:
        return default
    if isinstance(value, str):
        return None
    raise no_default("as_datetime", value)


def relative_time(value: Any) -> Any:
    """How long ago ``value`` was, in its largest unit: ``2 hours``, ``1 day``.

    Anything but a datetime, or a datetime in the future, is returned as it is.
    """
    if not isinstance(value, datetime):
        return value
    moment = as_local(value) if value.tzinfo is None else value
    if scope.run().now < moment:
        return value
    delta = (scope.run().now - moment).total_seconds()
    rounded = round(delta)
    unit = "year"
    for name, factor in (("second", 60), ("minute", 60), ("hour", 24), ("day", 30), ("month", 12)):
        if rounded < factor:
            unit = name
            break
        delta /= factor
        rounded = round(delta)
    return f"{rounded} {unit}" if rounded == 1 else f"{rounded} {unit}s"


def _from_timestamp(value: Any, local: bool) -> datetime:
    moment = datetime.fromtimestamp(float(value), UTC)
    return moment.astimezone(_zone()) if local else moment


def timestamp_custom(
    value: Any, format_string: str = DATE_FORMAT, local: bool = True, default: Any = MISSING
) -> Any:
    """A UNIX timestamp formatted with ``strftime`` (local time unless ``local=false``)."""
    try:
        return _from_timestamp(value, local).strftime(format_string[:200])
    except (ValueError, TypeError, OverflowError, OSError):
        if default is MISSING:
            raise no_default("timestamp_custom", value) from None
        return default


def timestamp_local(value: Any, default: Any = MISSING) -> Any:
    """A UNIX timestamp as local ISO text."""
    try:
        return _from_timestamp(value, True).isoformat()
    except (ValueError, TypeError, OverflowError, OSError):
        if default is MISSING:
            raise no_default("timestamp_local", value) from None
        return default


def timestamp_utc(value: Any, default: Any = MISSING) -> Any:
    """A UNIX timestamp as UTC ISO text."""
    try:
        return _from_timestamp(value, False).isoformat()
    except (ValueError, TypeError, OverflowError, OSError):
        if default is MISSING:
            raise no_default("timestamp_utc", value) from None
        return default
