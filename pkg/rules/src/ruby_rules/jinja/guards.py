"""Checks that run before anything a template does can grow: operators, methods, formats.

Jinja's sandbox already refuses private attributes and anything that changes a list, a
mapping or a set. What it leaves open is cost: ``9 ** 9 ** 9``, ``'a' * 10 ** 9``,
``'%0999999999d' % 1`` or ``'a'.ljust(10 ** 9)`` would each run for minutes or fill the
memory inside one C call that nothing can interrupt. Here every arithmetic operator, every
method call and every format string is checked against the size of what it would build,
before building it, and counted in the render's `ruby_rules.jinja.budget.Budget`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from string import Formatter
from typing import Any, Final

from jinja2.utils import Namespace

from ruby_rules.jinja.budget import MAX_INT, MAX_VALUE, LimitExceeded, current


def words(text: str) -> frozenset[str]:
    """The names in a text separated by spaces: tables of names stay readable."""
    return frozenset(text.split())


_MAX_WIDTH: Final = 100
"""Widths and precisions in a format string (``%10.2f``, ``{:>10}``)."""
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)

_STR_METHODS: Final = words(
    "capitalize casefold center count endswith find format format_map index isalnum isalpha "
    "isdecimal isdigit islower isnumeric isspace istitle isupper join ljust lower lstrip "
    "partition removeprefix removesuffix replace rfind rindex rjust rpartition rsplit rstrip "
    "split splitlines startswith strip swapcase title upper zfill"
)
_METHODS: Final[dict[type, frozenset[str]]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    datetime: words(
        "astimezone date isocalendar isoformat isoweekday replace strftime time timestamp "
        "timetz weekday"
    ),
    date: words("isocalendar isoformat isoweekday replace strftime weekday"),
    time: frozenset({"isoformat", "replace", "strftime"}),
    timedelta: frozenset({"total_seconds"}),
    tzinfo: words("dst tzname utcoffset"),  # not ZoneInfo.no_cache: it reads files
    int: frozenset({"bit_length", "is_integer"}),
    float: frozenset({"is_integer"}),
}
"""The methods a template may call, by the type of the object they belong to."""
CLOCK_READS: Final = frozenset({"now", "today", "utcnow", "fromtimestamp", "utcfromtimestamp"})
"""Class methods reachable from a date or time that would read the real clock."""


def is_number(value: object) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: Any) -> Any:
    """``value`` if not a number, or a finite one within `MAX_INT`; else `LimitExceeded`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise LimitExceeded("the result is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise LimitExceeded("the result is too large a number")
    return value


def sized(value: Any) -> Any:
    """Count ``value`` in the budget if it is text, a list or a mapping; return it."""
    if isinstance(value, str | list | tuple | dict | set | frozenset):
        current().build(len(value))
    return value


# --- text ---

_CONTAINERS: Final = (list, tuple, dict, set, frozenset)


def text_of(value: Any) -> str:
    """``str(value)``, refused before it is built if longer than `MAX_VALUE` characters."""
    if type(value) is str:
        return value
    if isinstance(value, _CONTAINERS):
        _estimate(value, [0])
    elif isinstance(value, Namespace):
        _estimate(getattr(value, "_Namespace__attrs", {}), [0])  # its repr shows them all
    return str(value)


def _estimate(value: Any, used: list[int]) -> None:
    used[0] += 2
    items = value.items() if isinstance(value, dict) else ((item, None) for item in value)
    for key, item in items:
        for part in (key, item):
            if isinstance(part, _CONTAINERS):
                _estimate(part, used)
            elif part is not None or isinstance(value, dict):
                used[0] += len(part) + 4 if isinstance(part, str) else 24
        if used[0] > MAX_VALUE:
            raise LimitExceeded(
                f"the template would write a text of more than {MAX_VALUE:,} characters"
            )


# --- operators ------------------------------------------------------------------------------


def _repeat(a: Any, b: Any) -> Any:
    sequence, count = (a, b) if isinstance(b, int) else (b, a)
    current().build(len(sequence) * max(count, 0))
    return sequence * count


def _multiply(a: Any, b: Any) -> Any:
    if isinstance(a, str | list | tuple) or isinstance(b, str | list | tuple):
        return _repeat(a, b)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > 400:
        raise LimitExceeded("the result is too large a number")
    return number(a * b)


def _power(a: Any, b: Any) -> Any:
    big = is_number(a) and is_number(b) and abs(a) > 1 and b > 0
    if big and b * math.log10(abs(a)) > math.log10(MAX_INT):
        raise LimitExceeded(f"{a!r} ** {b!r} is too large a number")
    try:
        return number(a**b)
    except OverflowError:
        raise LimitExceeded("the result is too large a number") from None


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str | list | tuple) and isinstance(b, str | list | tuple):
        current().build(len(a) + len(b))
    return number(a + b)


def _modulo(a: Any, b: Any) -> Any:
    if isinstance(a, str):
        return percent_format(a, b if isinstance(b, tuple) else (b,))
    return number(a % b)


def _numeric(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def calculate(a: Any, b: Any) -> Any:
        return number(apply(a, b))

    return calculate


BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "-": _numeric(operator.sub),
    "*": _multiply,
    "/": _numeric(operator.truediv),
    "//": _numeric(operator.floordiv),
    "%": _modulo,
    "**": _power,
}
"""Every arithmetic operator of Jinja, checked; intercepted, so none is folded at compile."""


# --- formats --------------------------------------------------------------------------------


def percent_format(text: str, args: Any) -> str:
    """``text % args`` when every width and precision is at most 100; else `LimitExceeded`."""
    for match in _PERCENT_SPEC.finditer(text):
        width, precision = match.group(1), match.group(2)
        for part in (width, precision):
            if part == "*" or (part and int(part) > _MAX_WIDTH):
                raise LimitExceeded(f"widths and precisions in a format are at most {_MAX_WIDTH}")
    for arg in args.values() if isinstance(args, Mapping) else args:
        text_of(arg)
    result: str = text % args
    current().build(len(result))
    return result


def check_brace_format(text: str) -> None:
    """`LimitExceeded` unless every ``{...:spec}`` field of ``text`` is small and flat."""
    try:
        fields = list(Formatter().parse(text))
    except ValueError as exc:
        raise LimitExceeded(f"invalid format {text[:40]!r}: {exc}") from None
    for _, _, spec, _ in fields:
        if spec and ("{" in spec or any(int(n) > _MAX_WIDTH for n in re.findall(r"\d+", spec))):
            raise LimitExceeded(f"widths and precisions in a format are at most {_MAX_WIDTH}")


# --- methods --------------------------------------------------------------------------------


def _owner(method: Any) -> Any:
    return getattr(method, "__self__", None)


def method_allowed(obj: Any, name: str) -> bool:
    """Whether a template may read the method ``name`` of ``obj``; other attributes pass.

    No method of a class (``dict.update(x, ...)`` would change ``x``); of a value, only the
    methods listed for its type.
    """
    if isinstance(obj, type):
        return not callable(getattr(obj, name, None))
    if isinstance(obj, date | datetime) and name in CLOCK_READS:
        return False
    allowed = next((names for kind, names in _METHODS.items() if isinstance(obj, kind)), None)
    return allowed is None or name in allowed or not callable(getattr(obj, name, None))


def checked_method_call(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Call a method of text, a list, a mapping or a date, refusing what would grow huge."""
    owner, name = _owner(method), getattr(method, "__name__", "")
    if isinstance(owner, str):
        if name in ("center", "ljust", "rjust", "zfill") and args:
            current().build(max(len(owner), int(args[0])))
        elif name == "replace" and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            hits = owner.count(old) if old else len(owner) + 1
            current().build(len(owner) + hits * max(len(new) - len(old), 0))
        elif name == "join" and args:
            items = list(args[0])
            current().build(sum(len(str(item)) for item in items) + len(owner) * len(items))
    if isinstance(owner, date | time) and name == "strftime" and args:
        current().build(len(str(args[0])) * 10)
    return sized(method(*args, **kwargs))


def is_builtin_method(obj: Any) -> bool:
    """A method bound to a value of one of the types `method_allowed` knows."""
    owner = _owner(obj)
    return owner is not None and isinstance(owner, tuple(_METHODS)) and not isinstance(obj, type)
