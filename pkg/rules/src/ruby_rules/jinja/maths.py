"""Home Assistant's arithmetic helpers: ``log``, ``sin``... ``sqrt``, ``median``, ``bitwise_*``.

Each converts its input with ``float`` (or ``int``) as Home Assistant does and, like HA,
fails the run when it cannot and no ``default`` is given. Numbers going in are bounded by
the operators' checks, so nothing here can take long.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any, Final

from ruby_rules.jinja.convert import items_of
from ruby_rules.jinja.guards import number
from ruby_rules.jinja.timefuncs import MISSING, no_default

CONSTANTS: Final = {"pi": math.pi, "tau": math.tau, "e": math.e}


def logarithm(value: Any, base: Any = math.e, default: Any = MISSING) -> Any:
    """``log(value, base)``."""
    try:
        return math.log(float(value), float(base))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        if default is MISSING:
            raise no_default("log", value) from None
        return default


def _unary(name: str, function: Callable[[float], float]) -> Callable[..., Any]:
    def apply(value: Any, default: Any = MISSING) -> Any:
        try:
            return function(float(value))
        except (ValueError, TypeError, OverflowError):
            if default is MISSING:
                raise no_default(name, value) from None
            return default

    apply.__name__ = name
    return apply


def arc_tangent2(y: Any, x: Any, default: Any = MISSING) -> Any:
    """``atan2(y, x)``."""
    try:
        return math.atan2(float(y), float(x))
    except (ValueError, TypeError, OverflowError):
        if default is MISSING:
            raise no_default("atan2", (y, x)) from None
        return default


UNARY: Final[dict[str, Callable[..., Any]]] = {
    name: _unary(name, function)
    for name, function in (
        ("sin", math.sin),
        ("cos", math.cos),
        ("tan", math.tan),
        ("asin", math.asin),
        ("acos", math.acos),
        ("atan", math.atan),
        ("sqrt", math.sqrt),
    )
}
"""The one-argument functions (also filters): ``sin(x)``, ``x | sqrt``..."""


def _statistic(name: str, function: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    def apply(*args: Any, default: Any = MISSING) -> Any:
        values = items_of(args[0]) if len(args) == 1 else list(args)
        try:
            return function(values)
        except (TypeError, ValueError, statistics.StatisticsError):
            if default is MISSING:
                raise no_default(name, args) from None
            return default

    apply.__name__ = name
    return apply


median: Final = _statistic("median", statistics.median)
statistical_mode: Final = _statistic("statistical_mode", statistics.mode)


def _bitwise(name: str, function: Callable[[int, int], int]) -> Callable[[Any, Any], Any]:
    def apply(first: Any, second: Any) -> Any:
        return number(function(int(first), int(second)))

    apply.__name__ = name
    return apply


BITWISE: Final = {
    "bitwise_and": _bitwise("bitwise_and", lambda a, b: a & b),
    "bitwise_or": _bitwise("bitwise_or", lambda a, b: a | b),
    "bitwise_xor": _bitwise("bitwise_xor", lambda a, b: a ^ b),
}


def ordinal(value: Any) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``..."""
    text = str(int(value))
    if int(text[-2:]) % 100 in range(11, 14):
        return text + "th"
    return text + ["th", "st", "nd", "rd", "th", "th", "th", "th", "th", "th"][int(text[-1])]
