"""What expressions compute with: their values, and what each operator does with them.

A value is None, a bool, an int, a float, a str, a list or a mapping with text keys: JSON data,
or read-only views of the run's context. Operators check their operands and raise `Fault` with
a message that says what was expected; numbers stay finite and within `MAX_INT`, built texts
and lists within `MAX_SIZE`, so nothing an expression computes can grow without bound.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias, TypeGuard, TypeVar

from pydantic import JsonValue

MAX_SIZE: Final = 10_000
"""Characters of a text, or items of a list, that an expression builds."""
MAX_INT: Final = 10**100
"""Whole numbers stay within this magnitude (and fractional ones finite)."""

Value: TypeAlias = object
"""What an expression computes: None, bool, int, float, str, a list or a mapping of text keys."""
Sized = TypeVar("Sized", str, list[Value])


class Fault(Exception):  # noqa: N818 - internal; always becomes an ExpressionError
    """Why an expression is refused or failed; the caller adds the expression's text."""


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def kind(value: Value) -> str:
    """How a value reads in a message: ``a number``, ``text 'abc'``, ``nothing``..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def number(value: float) -> float:
    """``value`` if finite and within `MAX_INT`, else a `Fault`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise Fault("the result is not a finite number")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise Fault("the result is too large a number")
    return value


def limited(value: Sized) -> Sized:
    """``value`` if at most `MAX_SIZE` characters or items long, else a `Fault`."""
    if len(value) > MAX_SIZE:
        raise Fault(f"the result has {len(value)} characters or items; at most {MAX_SIZE} allowed")
    return value


def to_json(value: Value) -> JsonValue:
    """A fresh JSON copy of a value: mappings become dicts, tuples lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    raise Fault(f"cannot use a {type(value).__name__} as a value")


def to_text(value: Value) -> str:
    """Text as ``str()`` gives it for text, numbers, bools and None; JSON for the others."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    return limited(json.dumps(to_json(value), ensure_ascii=False))


def truthy(value: Value) -> bool:
    """True, a number other than 0, or the text ``true``/``on``/``yes`` (any case)."""
    if isinstance(value, bool):
        return value
    if is_number(value):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in ("true", "on", "yes")


def member(container: Value, key: Value, shown_key: str) -> Value:
    """``container[key]``, leniently as in Home Assistant: a missing key, an index out of range
    or anything read from None is None. Reading from text, a number or a bool is a `Fault`."""
    if container is None:
        return None
    if isinstance(container, Mapping):
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, list) and not isinstance(key, str):
        if isinstance(key, int) and not isinstance(key, bool) and -len(container) <= key:
            return container[key] if key < len(container) else None
        return None
    raise Fault(f"cannot read {shown_key} of {kind(container)}: expected a mapping or a list")


# --- operators ------------------------------------------------------------------------------


def _add(a: Value, b: Value) -> Value:
    if isinstance(a, str) and isinstance(b, str):
        return limited(a + b)
    if isinstance(a, list) and isinstance(b, list):
        return limited(a + b)
    if is_number(a) and is_number(b):
        return number(a + b)
    raise Fault(f"'+' needs two numbers, two texts or two lists; got {kind(a)} and {kind(b)}")


def _arithmetic(symbol: str, apply: Callable[[float, float], float]) -> Callable[..., Value]:
    def calculate(a: Value, b: Value) -> Value:
        if not (is_number(a) and is_number(b)):
            raise Fault(f"'{symbol}' needs numbers; got {kind(a)} and {kind(b)}")
        try:
            return number(apply(a, b))
        except ZeroDivisionError:
            raise Fault(f"division by zero in '{symbol}'") from None
        except OverflowError:
            raise Fault("the result is too large a number") from None

    return calculate


def _ordered(apply: Callable[[Any, Any], Any]) -> Callable[[Value, Value], bool]:
    def compare(a: Value, b: Value) -> bool:
        try:
            return bool(apply(a, b))
        except TypeError:
            raise Fault(f"cannot compare {kind(a)} with {kind(b)}") from None

    return compare


def _contains(item: Value, container: Value) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        if not isinstance(item, str):
            raise Fault(f"'in' text needs text on its left; got {kind(item)}")
        return item in container
    if isinstance(container, list):
        return item in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    raise Fault(f"'in' needs text, a list or a mapping on its right; got {kind(container)}")


BINARY: dict[type[ast.operator], Callable[..., Value]] = {
    ast.Add: _add,
    ast.Sub: _arithmetic("-", operator.sub),
    ast.Mult: _arithmetic("*", operator.mul),
    ast.Div: _arithmetic("/", operator.truediv),
    ast.FloorDiv: _arithmetic("//", operator.floordiv),
    ast.Mod: _arithmetic("%", operator.mod),
}
"""What each arithmetic operator does; ``|`` is not here: the compiler reads it as a filter."""
COMPARE: dict[type[ast.cmpop], Callable[[Value, Value], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: _ordered(operator.lt),
    ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt),
    ast.GtE: _ordered(operator.ge),
    ast.In: _contains,
    ast.NotIn: lambda item, container: not _contains(item, container),
}
"""What each comparison does; a chain ``a < b < c`` tests each pair in turn."""
SYMBOLS: dict[type[ast.AST], str] = {
    ast.Pow: "'**'",
    ast.BitAnd: "'&'",
    ast.BitXor: "'^'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.MatMult: "'@'",
    ast.Invert: "'~'",
    ast.Is: "'is'",
    ast.IsNot: "'is not'",
}
"""The operators refused, as written, for messages."""
