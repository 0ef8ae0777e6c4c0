"""Rule values with ``{{ expr }}``: what expressions in rules can read, compiling and rendering.

A string that is exactly one ``{{ expr }}`` (whitespace around it allowed) renders to the
expression's typed result: a number, a bool, text, None, a list or a mapping. Any other string
containing ``{{ }}`` renders as text, each expression's result interpolated (None as ``""``).
Lists and dict values are rendered item by item; dict keys are not templated. A value without
``{{`` is static: rendering returns it as it is.

Expressions (`ruby_rules.expressions`) read ``trigger`` and call `FUNCTIONS` and `FILTERS`.
`compile_value` refuses a bad expression with `ExpressionError` (a `ValueError`, so in a config
field pydantic reports it at its place in the rule file) and caches what it compiled
(thread-safe). A `Template` is immutable: render it from any thread or task.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeAlias

from pydantic import AfterValidator, JsonValue

from ruby_rules.context import Context
from ruby_rules.expressions import (
    Expression,
    ExpressionError,
    Function,
    Scope,
    Vocabulary,
    compile_expression,
)
from ruby_rules.operators import (
    MAX_SIZE,
    Fault,
    Value,
    is_number,
    kind,
    number,
    to_json,
    to_text,
    truthy,
)
from ruby_schemas.ha_events import EntityState
from ruby_schemas.primitives import JsonObject

_MISSING: Final = object()
_DELIMITED = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

Renderer: TypeAlias = Callable[[Scope], JsonValue]


# --- what expressions read ------------------------------------------------------------------


def _state_record(entity_id: str | None, state: EntityState | None) -> Value:
    if state is None:
        return None
    return MappingProxyType(
        {
            "entity_id": entity_id,
            "state": state.state,
            "attributes": MappingProxyType(state.attributes),
            "last_changed": state.last_changed.isoformat(),
            "last_updated": state.last_updated.isoformat(),
        }
    )


def _trigger_record(ctx: Context) -> Value:
    trigger = ctx.trigger
    if trigger is None:
        return None
    event = None
    if trigger.event_type is not None:
        event = MappingProxyType(
            {"event_type": trigger.event_type, "data": MappingProxyType(dict(trigger.event_data))}
        )
    return MappingProxyType(
        {
            "kind": trigger.kind,
            "id": trigger.id,
            "event_id": trigger.event_id,
            "time": trigger.time.isoformat(),
            "entity_id": trigger.entity_id,
            "from_state": _state_record(trigger.entity_id, trigger.from_state),
            "to_state": _state_record(trigger.entity_id, trigger.to_state),
            "event": event,
        }
    )


def _now_record(ctx: Context) -> Value:
    now: datetime = ctx.now
    return MappingProxyType(
        {
            "year": now.year,
            "month": now.month,
            "day": now.day,
            "hour": now.hour,
            "minute": now.minute,
            "second": now.second,
            "weekday": now.weekday(),
            "iso": now.isoformat(),
        }
    )


def _state_of(scope: Scope, entity_id: Value, function: str) -> EntityState | None:
    if entity_id is None:
        return None
    if not isinstance(entity_id, str):
        raise Fault(f"{function}() needs an entity id as text; got {kind(entity_id)}")
    return scope.ctx.states.get(entity_id)


def _states(scope: Scope, entity_id: Value) -> Value:
    state = _state_of(scope, entity_id, "states")
    return None if state is None else state.state


def _state_attr(scope: Scope, entity_id: Value, attribute: Value) -> Value:
    if not isinstance(attribute, str):
        raise Fault(f"state_attr() needs an attribute name as text; got {kind(attribute)}")
    state = _state_of(scope, entity_id, "state_attr")
    return None if state is None else state.attributes.get(attribute)


def _is_state(scope: Scope, entity_id: Value, accepted: Value) -> Value:
    states = [accepted] if isinstance(accepted, str) else accepted
    if not (isinstance(states, list) and all(isinstance(item, str) for item in states)):
        raise Fault(f"is_state() needs a state as text, or a list of them; got {kind(accepted)}")
    state = _state_of(scope, entity_id, "is_state")
    return state is not None and state.state in states


def _now(scope: Scope) -> Value:
    return scope.derived("now", _now_record)


# --- conversions ----------------------------------------------------------------------------


def _to_int(value: Value, default: Value = _MISSING) -> Value:
    try:
        if isinstance(value, int):  # a bool too: True is 1
            return int(value)
        if isinstance(value, float):
            return number(int(value))
        if isinstance(value, str) and len(value) <= 100:
            try:
                return int(value)
            except ValueError:
                return number(int(float(value)))
    except (ValueError, OverflowError):
        pass
    if default is not _MISSING:
        return default
    raise Fault(f"cannot convert {kind(value)} to int: expected a number, or a default: int(x, 0)")


def _to_float(value: Value, default: Value = _MISSING) -> Value:
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 100):
            result = float(value)
            if math.isfinite(result):
                return result
    except (ValueError, OverflowError):
        pass
    if default is not _MISSING:
        return default
    raise Fault(
        f"cannot convert {kind(value)} to float: expected a number, or a default: float(x, 0)"
    )


def _round(value: Value, digits: Value = 0) -> Value:
    if not is_number(value):
        raise Fault(f"round() needs a number; got {kind(value)} (convert it first: x | float)")
    if not (isinstance(digits, int) and not isinstance(digits, bool) and -15 <= digits <= 15):
        raise Fault(f"round() needs digits from -15 to 15; got {kind(digits)}")
    return number(round(value)) if digits == 0 else round(value, digits)


def _abs(value: Value) -> Value:
    if not is_number(value):
        raise Fault(f"abs() needs a number; got {kind(value)}")
    return abs(value)


def _extreme(name: str, pick: Callable[[list[Any]], Any]) -> Callable[..., Value]:
    def choose(*values: Value) -> Value:
        items = values[0] if len(values) == 1 and isinstance(values[0], list) else list(values)
        if not items:
            raise Fault(f"{name}() of an empty list")
        try:
            return pick(items)
        except TypeError:
            raise Fault(f"{name}() needs values that compare: all numbers or all texts") from None

    return choose


def _len(value: Value) -> Value:
    if isinstance(value, str | list | Mapping):
        return len(value)
    raise Fault(f"len() needs text, a list or a mapping; got {kind(value)}")


def _default(value: Value, fallback: Value) -> Value:
    return fallback if value is None else value


def _case(name: str, change: Callable[[str], str]) -> Callable[[Value], Value]:
    def apply(value: Value) -> Value:
        if not isinstance(value, str):
            raise Fault(f"'{name}' needs text; got {kind(value)}")
        return change(value)

    return apply


_CONVERSIONS: dict[str, Function] = {
    "int": Function(_to_int, (1, 2), "int(x) or int(x, default)"),
    "float": Function(_to_float, (1, 2), "float(x) or float(x, default)"),
    "str": Function(to_text, (1, 1), "str(x)"),
    "bool": Function(truthy, (1, 1), "bool(x)"),
    "round": Function(_round, (1, 2), "round(x) or round(x, digits)"),
    "abs": Function(_abs, (1, 1), "abs(x)"),
    "min": Function(_extreme("min", min), (1, 100), "min(a, b, ...) or min(list)"),
    "max": Function(_extreme("max", max), (1, 100), "max(a, b, ...) or max(list)"),
    "len": Function(_len, (1, 1), "len(x)"),
}

FUNCTIONS: Final[dict[str, Function]] = {
    "states": Function(_states, (1, 1), "states('sensor.x')", reads_scope=True),
    "state_attr": Function(
        _state_attr, (2, 2), "state_attr('light.x', 'brightness')", reads_scope=True
    ),
    "is_state": Function(_is_state, (2, 2), "is_state('light.x', 'on')", reads_scope=True),
    "now": Function(_now, (0, 0), "now()", reads_scope=True),
    **_CONVERSIONS,
}
"""The functions expressions may call."""

FILTERS: Final[dict[str, Function]] = {
    "int": replace(_CONVERSIONS["int"], usage="x | int or x | int(default)"),
    "float": replace(_CONVERSIONS["float"], usage="x | float or x | float(default)"),
    "round": replace(_CONVERSIONS["round"], usage="x | round or x | round(digits)"),
    "default": Function(_default, (2, 2), "x | default(value)"),
    "lower": Function(_case("lower", str.lower), (1, 1), "x | lower"),
    "upper": Function(_case("upper", str.upper), (1, 1), "x | upper"),
    **{
        name: replace(_CONVERSIONS[name], arity=(1, 1), usage=f"x | {name}")
        for name in ("str", "bool", "abs", "min", "max", "len")
    },
}
"""The filters, ``x | name`` or ``x | name(args)``: ``name(x, args)``."""

VOCABULARY: Final = Vocabulary(
    names={"trigger": lambda scope: scope.derived("trigger", _trigger_record)},
    functions=FUNCTIONS,
    filters=FILTERS,
)
"""What an expression in a rule may read and call."""


# --- templates ------------------------------------------------------------------------------


class Template:
    """A compiled rule value. Immutable: render it from any thread or task."""

    __slots__ = ("_renderer", "_value")

    def __init__(self, value: JsonValue, renderer: Renderer | None) -> None:
        self._value = value
        self._renderer = renderer

    @property
    def is_static(self) -> bool:
        """True when the value holds no expression: `render` returns it unchanged."""
        return self._renderer is None

    def render(self, ctx: Context) -> JsonValue:
        """The value with each expression evaluated in ``ctx``; `ExpressionError` if one fails.

        A static value is returned as it is (not copied); anything rendered is a fresh copy.
        """
        if self._renderer is None:
            return self._value
        return self._renderer(Scope(ctx))


def compile_value(value: JsonValue) -> Template:
    """Compile every ``{{ expr }}`` in ``value``; `ExpressionError` says what was expected.

    Cached by the value's JSON text, so calling it for every run costs one ``json.dumps``.
    """
    return Template(value, _compiled(json.dumps(value, ensure_ascii=False)))


def render(value: JsonValue, ctx: Context) -> JsonValue:
    """``compile_value(value).render(ctx)``."""
    return compile_value(value).render(ctx)


def render_object(value: JsonObject, ctx: Context) -> JsonObject:
    """`render` for a mapping, such as a call's or an event's data."""
    rendered = render(value, ctx)
    if not isinstance(rendered, dict):  # a mapping always renders to a mapping
        raise TypeError(f"expected a mapping, rendered {kind(rendered)}")
    return rendered


def check_value(value: JsonValue) -> JsonValue:
    """``value`` unchanged if every expression in it compiles; else `ExpressionError`."""
    compile_value(value)
    return value


TemplatedValue: TypeAlias = Annotated[JsonValue, AfterValidator(check_value)]
"""A JSON value whose strings may hold ``{{ expr }}``, checked at load."""

TemplatedObject: TypeAlias = dict[str, TemplatedValue]
"""A JSON object whose values may hold ``{{ expr }}``; an error names its key."""


@functools.lru_cache(maxsize=4096)
def _compiled(key: str) -> Renderer | None:
    return _compile_json(json.loads(key))


def _compile_json(value: JsonValue) -> Renderer | None:
    if isinstance(value, str):
        return _compile_text(value)
    if isinstance(value, list):
        items = [(_compile_json(item), item) for item in value]
        if all(renderer is None for renderer, _ in items):
            return None
        parts = [renderer or _copy(item) for renderer, item in items]
        return lambda scope: [part(scope) for part in parts]
    if isinstance(value, dict):
        fields = {key: (_compile_json(item), item) for key, item in value.items()}
        if all(renderer is None for renderer, _ in fields.values()):
            return None
        named = {key: renderer or _copy(item) for key, (renderer, item) in fields.items()}
        return lambda scope: {key: part(scope) for key, part in named.items()}
    return None


def _copy(value: JsonValue) -> Renderer:
    return lambda scope: to_json(value)


def _compile_text(text: str) -> Renderer | None:
    if "{%" in text:
        raise ExpressionError(
            f"'{{%' statements are not supported ({text[:60]!r}): expected '{{{{ expr }}}}', "
            "with 'a if condition else b' for a choice"
        )
    texts: list[str] = []
    expressions: list[Expression] = []
    end = 0
    for match in _DELIMITED.finditer(text):
        texts.append(text[end : match.start()])
        expressions.append(compile_expression(match.group(1), VOCABULARY))
        end = match.end()
    tail = text[end:]
    if "{{" in tail:
        raise ExpressionError(
            f"unclosed '{{{{' in {text[:60]!r}: expected '}}}}' after the expression"
        )
    if not expressions:
        return None
    if len(expressions) == 1 and not texts[0].strip() and not tail.strip():
        return expressions[0].value
    pieces = [piece for pair in zip(texts, expressions, strict=True) for piece in pair]
    return lambda scope: _interpolate([*pieces, tail], scope)


def _interpolate(pieces: list[str | Expression], scope: Scope) -> str:
    text = "".join(piece if isinstance(piece, str) else piece.text(scope) for piece in pieces)
    if len(text) > MAX_SIZE:
        raise ExpressionError(f"the rendered text has {len(text)} characters; at most {MAX_SIZE}")
    return text
