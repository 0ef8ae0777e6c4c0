"""Home Assistant's conversions and helpers: ``float``, ``int``, ``round``, ``bool``, ``iif``...

Each behaves as Home Assistant's does (``'abc' | float`` is an error, ``'abc' | float(0)``
is 0), with the bounds a shared engine needs: a rounding precision from -15 to 15, texts and
lists within `ruby_rules.jinja.budget.MAX_VALUE`, each item iterated counted in the budget.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import statistics
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from jinja2 import Undefined

from ruby_rules.jinja.budget import MAX_VALUE, LimitExceeded, current
from ruby_rules.jinja.guards import is_number, text_of
from ruby_rules.jinja.timefuncs import MISSING, no_default

_TRUE: Final = frozenset({"1", "true", "yes", "on", "enable"})
_FALSE: Final = frozenset({"0", "false", "no", "off", "disable"})


def to_float(value: Any, default: Any = MISSING) -> Any:
    """``float(value)``; without a default, an error for what is not a number."""
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("float", value) from None
        return default


def to_int(value: Any, default: Any = MISSING, base: int = 10) -> Any:
    """``int(value)`` (``'12.7'`` gives 12); without a default, an error for non-numbers."""
    try:
        if isinstance(value, str):
            try:
                return int(value, base)
            except ValueError:
                return int(float(value))
        return int(value)
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("int", value) from None
        return default


def to_bool(value: Any, default: Any = MISSING) -> Any:
    """``true`` for true, a number other than 0, or ``1/true/yes/on/enable`` (any case)."""
    if isinstance(value, bool):
        return value
    if is_number(value):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if default is MISSING:
        raise no_default("bool", value)
    return default


def is_numeric(value: Any) -> bool:
    """Whether ``value`` reads as a finite number (a bool does not)."""
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return math.isfinite(number)


def rounded(value: Any, precision: int = 0, method: str = "common", default: Any = MISSING) -> Any:
    """Home Assistant's ``round``: ``common``, ``ceil``, ``floor`` or ``half``; an int when
    ``precision`` is 0."""
    if not (isinstance(precision, int) and -15 <= precision <= 15):
        raise LimitExceeded(f"round() needs a precision from -15 to 15; got {precision!r}")
    try:
        number, scale = float(value), float(10**precision)
        if method == "ceil":
            result = math.ceil(number * scale) / scale
        elif method == "floor":
            result = math.floor(number * scale) / scale
        elif method == "half":
            result = round(number * 2) / 2
        else:
            result = round(number, precision)
        return int(result) if precision == 0 else result
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("round", value) from None
        return default


def iif(value: Any, if_true: Any = True, if_false: Any = False, if_none: Any = MISSING) -> Any:
    """``if_true`` when ``value`` is true, ``if_none`` (if given) when it is None, else
    ``if_false``."""
    if value is None and if_none is not MISSING:
        return if_none
    return if_true if bool(value) else if_false


def multiply(value: Any, amount: Any, default: Any = MISSING) -> Any:
    """``float(value) * amount``."""
    try:
        return float(value) * float(amount)
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("multiply", value) from None
        return default


def add(value: Any, amount: Any, default: Any = MISSING) -> Any:
    """``float(value) + amount``."""
    try:
        return float(value) + float(amount)
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("add", value) from None
        return default


def items_of(values: Any) -> list[Any]:
    """The items of an iterable (text is one item), each counted in the budget."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        return [values]
    budget, items = current(), []
    for item in values:
        budget.step()
        items.append(item)
        if len(items) > MAX_VALUE:
            budget.build(len(items))
    return items


def _arguments(name: str, args: tuple[Any, ...]) -> list[Any]:
    if not args:
        raise TypeError(f"{name} expected at least 1 argument, got 0")
    return items_of(args[0]) if len(args) == 1 else list(args)


def minimum(*args: Any) -> Any:
    """``min(a, b)`` or ``min(list)``."""
    return min(_arguments("min", args))


def maximum(*args: Any) -> Any:
    """``max(a, b)`` or ``max(list)``."""
    return max(_arguments("max", args))


def average(*args: Any, default: Any = MISSING) -> Any:
    """The mean of numbers, given one by one or as one list."""
    try:
        return statistics.fmean(_arguments("average", args))
    except (TypeError, ValueError, statistics.StatisticsError):
        if default is MISSING:
            raise no_default("average", args) from None
        return default


def total(values: Any, attribute: Any = None, start: Any = 0) -> Any:
    """The sum of numbers (Jinja's ``sum``; texts and lists are refused, they would grow)."""
    result = start
    for item in items_of(values):
        value = item.get(attribute) if attribute is not None and isinstance(item, dict) else item
        if not (is_number(value) and is_number(result)):
            raise TypeError("sum needs numbers")
        result += value
    return result


def join(values: Any, separator: str = "", attribute: Any = None) -> str:
    """Jinja's ``join``, counting each item and the text it builds."""
    budget, parts, size = current(), [], 0
    for item in items_of(values):
        value = item.get(attribute) if attribute is not None and isinstance(item, dict) else item
        part = text_of(value)
        size += len(part) + len(separator)
        budget.build(size)
        parts.append(part)
    return str(separator).join(parts)


def to_list(values: Any) -> list[Any]:
    """Jinja's ``list``: the characters of a text, the items of anything iterable."""
    if isinstance(values, str):
        return list(values)
    items = items_of(values)
    current().build(len(items))
    return items


def to_json(value: Any, ensure_ascii: bool = False, pretty_print: bool = False,
            sort_keys: bool = False) -> str:  # fmt: skip
    """JSON text; dates and times as ISO text, as Home Assistant writes them."""
    text_of(value)
    return json.dumps(
        value,
        ensure_ascii=ensure_ascii,
        indent=2 if pretty_print else None,
        sort_keys=sort_keys,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if hasattr(value, "items"):
        return dict(value.items())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def from_json(value: Any, default: Any = MISSING) -> Any:
    """The value of a JSON text."""
    try:
        return json.loads(text_of(value))
    except (ValueError, TypeError, RecursionError):
        if default is MISSING:
            raise no_default("from_json", value) from None
        return default


def contains(container: Any, item: Any) -> bool:
    """``item in container``."""
    return item in container


def to_set(values: Any) -> set[Any]:
    """``set(values)``, each item counted."""
    return set(items_of(values))


def to_tuple(values: Any) -> tuple[Any, ...]:
    """``tuple(values)``, each item counted."""
    return tuple(items_of(values))


def zipped(*iterables: Any) -> list[tuple[Any, ...]]:
    """``zip(...)`` as a list, each item counted."""
    return list(zip(*(items_of(iterable) for iterable in iterables), strict=False))


def strptime(text: Any, format_string: Any, default: Any = MISSING) -> Any:
    """``datetime.strptime(text, format)``."""
    try:
        return datetime.strptime(str(text)[:200], str(format_string)[:200])
    except (ValueError, TypeError):
        if default is MISSING:
            raise no_default("strptime", text) from None
        return default


def base64_encode(value: Any) -> str:
    """The base64 text of ``value``'s UTF-8 bytes."""
    return base64.b64encode(text_of(value).encode()).decode()


def base64_decode(value: Any, encoding: str | None = "utf-8") -> Any:
    """The text (or, with ``encoding=none``, the bytes) a base64 text holds."""
    try:
        decoded = base64.b64decode(text_of(value))
    except (binascii.Error, ValueError):
        raise ValueError("base64_decode got invalid base64 input") from None
    return decoded if encoding is None else decoded.decode(encoding)


def is_defined(value: Any) -> Any:
    """``value``, or a failure of the run if it is undefined (a missing name or key)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value
