"""What a template in a rule may call: Home Assistant's functions, filters and tests.

Every filter and test is wrapped by `checked`: it counts in the render's budget, its result
is measured before it is returned, and it is marked ``pass_context`` so that Jinja never
calls it at compile time to fold constants (``'a' | center(10 ** 9)`` would otherwise run
while a rule file loads). Jinja's own filters are taken only where their cost is bounded by
their input; the rest are absent (an unknown filter is a load error).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, cast

from jinja2 import filters as jinja_filters
from jinja2 import pass_context
from jinja2 import tests as jinja_tests
from jinja2.runtime import Context as JinjaContext
from jinja2.utils import Namespace, _PassArg

from ruby_rules.jinja import convert, maths, regexes, states, timefuncs
from ruby_rules.jinja.budget import current, nested
from ruby_rules.jinja.guards import check_brace_format, percent_format, sized, text_of, words

MAX_RANGE: Final = 100_000
"""Items of one ``range(...)``, as in Jinja's sandbox (Home Assistant's limit too)."""


def checked(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as a filter or test: counted, measured, never folded at compile time."""
    passes = _PassArg.from_obj(function)

    @pass_context
    @functools.wraps(function)
    def call(context: JinjaContext, *args: Any, **kwargs: Any) -> Any:
        with nested():
            if passes is _PassArg.context:
                return sized(function(context, *args, **kwargs))
            if passes is _PassArg.eval_context:
                return sized(function(context.eval_ctx, *args, **kwargs))
            if passes is _PassArg.environment:
                return sized(function(context.environment, *args, **kwargs))
            return sized(function(*args, **kwargs))

    return call


def bounded_range(*args: int) -> range:
    """``range(...)`` of at most `MAX_RANGE` items."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"a range has at most {MAX_RANGE:,} items; got {len(numbers):,}")
    current().step()
    return numbers


def _format(text: str, *args: Any, **kwargs: Any) -> str:
    if kwargs:
        check_brace_format(text)
        return text.format(**kwargs)
    return percent_format(text, args)


def checked_replace(text: str, old: str, new: str, count: int | None) -> str:
    """``text.replace(old, new)``, refused before it is built if it would be too long."""
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    current().build(len(text) + hits * max(len(new) - len(old), 0))
    return text.replace(old, new, -1 if count is None else count)


def _replace(text: Any, old: Any, new: Any, count: int | None = None) -> str:
    return checked_replace(text_of(text), text_of(old), text_of(new), count)


def _measured(function: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter that writes its value as text: refused first if that text is too long."""

    @functools.wraps(function)
    def call(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        text_of(value)
        return function(first, value, *args, **kwargs)

    return call


def _on_text(function: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter or test that turns its value into text: measured before it does."""

    @functools.wraps(function)
    def call(value: Any, *args: Any, **kwargs: Any) -> Any:
        return function(text_of(value), *args, **kwargs)

    return call


def _center(text: Any, width: int = 80) -> str:
    value = text_of(text)
    current().build(max(len(value), int(width)))
    return value.center(int(width))


_STATE_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "is_state": states.is_state,
    "state_attr": states.state_attr,
    "is_state_attr": states.is_state_attr,
    "has_value": states.has_value,
    "expand": states.expand,
}
_TIME_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "now": timefuncs.now,
    "utcnow": timefuncs.utcnow,
    "today_at": timefuncs.today_at,
    "as_timestamp": timefuncs.as_timestamp,
    "as_datetime": timefuncs.as_datetime,
    "as_local": timefuncs.as_local,
    "relative_time": timefuncs.relative_time,
    "timestamp_custom": timefuncs.timestamp_custom,
    "timestamp_local": timefuncs.timestamp_local,
    "timestamp_utc": timefuncs.timestamp_utc,
}
_CONVERSIONS: Final[dict[str, Callable[..., Any]]] = {
    "float": convert.to_float,
    "int": convert.to_int,
    "bool": convert.to_bool,
    "is_number": convert.is_numeric,
    "iif": convert.iif,
    "min": convert.minimum,
    "max": convert.maximum,
    "average": convert.average,
    "to_json": convert.to_json,
    "from_json": convert.from_json,
}
_MATHS: Final[dict[str, Callable[..., Any]]] = {
    "log": maths.logarithm,
    **maths.UNARY,
    "atan2": maths.arc_tangent2,
    "median": maths.median,
    "statistical_mode": maths.statistical_mode,
}

GLOBALS: Final[dict[str, Any]] = {
    "states": states.STATES,
    **_STATE_FUNCTIONS,
    **_TIME_FUNCTIONS,
    **_CONVERSIONS,
    **_MATHS,
    **maths.CONSTANTS,
    "strptime": convert.strptime,
    "set": convert.to_set,
    "tuple": convert.to_tuple,
    "zip": convert.zipped,
    "timedelta": timedelta,
    "range": bounded_range,
    "namespace": Namespace,
    "dict": dict,
}
"""The names a template may use besides ``trigger`` (Jinja's ``lipsum``, ``cycler`` and
``joiner`` are absent)."""

_JINJA_FILTERS: Final = sorted(
    words(
        "abs attr count d default dictsort filesizeformat first groupby items last length map "
        "reject rejectattr reverse select selectattr sort unique"
    )
)
_TEXT_FILTERS: Final = words("capitalize lower title trim truncate upper urlencode wordcount")
"""Jinja's filters that call ``str()`` on their value (``[big] * 60000 | upper``)."""

_TIME_FILTERS: Final = words(
    "as_timestamp as_datetime as_local relative_time timestamp_custom timestamp_local timestamp_utc"
)

FILTERS: Final[dict[str, Callable[..., Any]]] = {
    **{name: checked(jinja_filters.FILTERS[name]) for name in _JINJA_FILTERS},
    **{name: checked(_on_text(jinja_filters.FILTERS[name])) for name in sorted(_TEXT_FILTERS)},
    **{name: checked(function) for name, function in _CONVERSIONS.items()},
    **{name: checked(function) for name, function in _STATE_FUNCTIONS.items()},
    **{name: checked(getattr(timefuncs, name)) for name in sorted(_TIME_FILTERS)},
    "states": checked(states.STATES),
    "round": checked(convert.rounded),
    "multiply": checked(convert.multiply),
    "add": checked(convert.add),
    "sum": checked(convert.total),
    "join": checked(convert.join),
    "list": checked(convert.to_list),
    "string": checked(text_of),
    "tojson": checked(_measured(jinja_filters.FILTERS["tojson"])),  # Jinja's: HTML-safe
    "format": checked(_format),
    "replace": checked(_replace),
    "center": checked(_center),
    "contains": checked(convert.contains),
    **{name: checked(function) for name, function in _MATHS.items()},
    **{name: checked(function) for name, function in maths.BITWISE.items()},
    "ordinal": checked(maths.ordinal),
    "base64_encode": checked(convert.base64_encode),
    "base64_decode": checked(convert.base64_decode),
    "is_defined": checked(convert.is_defined),
    "ord": checked(ord),
    **{name: checked(function) for name, function in regexes.FILTERS.items()},
}
"""The filters, ``x | name`` or ``x | name(args)``."""

TESTS: Final[dict[str, Callable[..., Any]]] = {
    **{name: checked(cast(Callable[..., Any], test)) for name, test in jinja_tests.TESTS.items()},
    **{
        name: checked(_on_text(cast(Callable[..., Any], jinja_tests.TESTS[name])))
        for name in ("lower", "upper")  # they call str() on the value
    },
    "is_number": checked(convert.is_numeric),
    "has_value": checked(states.has_value),
    "is_state": checked(states.is_state),
    "is_state_attr": checked(states.is_state_attr),
    "contains": checked(convert.contains),
    "list": checked(lambda value: isinstance(value, list)),
    "set": checked(lambda value: isinstance(value, set | frozenset)),
    "tuple": checked(lambda value: isinstance(value, tuple)),
    "datetime": checked(lambda value: isinstance(value, datetime)),
    "string_like": checked(lambda value: isinstance(value, str | bytes | bytearray)),
    **{name: checked(function) for name, function in regexes.TESTS.items()},
}
"""The tests, ``x is name`` or ``x is name(args)``."""

NOT_SUPPORTED: Final[dict[str, str]] = {
    **{
        name: "it needs Home Assistant's registries, which Ruby Core does not have yet"
        for name in words(
            "area_entities area_devices area_id area_name areas device_attr device_entities "
            "device_id device_name is_device_attr floor_areas floor_id floor_name floors "
            "floor_entities label_areas label_devices label_entities label_id label_name labels "
            "integration_entities config_entry_id config_entry_attr state_translated"
        )
    },
    **{
        name: "a rule gives the same result when a run is repeated; this would not"
        for name in ("random", "shuffle")
    },
    **{name: "it needs the home's location" for name in ("distance", "closest")},
}
"""Home Assistant's names that a template may not use yet, and why (a load error)."""
