"""Rule values with Home Assistant templates: compiling them at load, rendering them per run.

A string holding ``{{ ... }}``, ``{% ... %}`` or ``{# ... #}`` is one Jinja template in
Home Assistant's language (`ruby_rules.jinja`). Rendering it gives what Home Assistant
gives: the text, stripped, read back as a value when it is a Python literal (``"21.5"`` a
number, ``"True"`` a bool, ``"[1, 2]"`` a list; `ruby_rules.jinja.results.typed`), text
otherwise. Lists and mapping values are rendered item by item; mapping keys never are. A
string without a template is static: rendering returns the value as it is.

`compile_value` refuses a bad template with `ExpressionError` (a `ValueError`, so in a config
field pydantic reports it at its place in the rule file), and caches what it compiled
(thread-safe). A `Template` is immutable: render it from any thread or task. Each render
runs within a budget of steps, memory and time (`ruby_rules.jinja.budget`); a template that
goes past it fails its run with the reason, like any other failure.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Annotated, Final, TypeAlias

from pydantic import AfterValidator, JsonValue

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError, shown
from ruby_rules.jinja.environment import (
    Compiled,
    TemplateFailure,
    compile_template,
    render_text,
)
from ruby_rules.jinja.results import typed
from ruby_schemas.primitives import JsonObject

_DELIMITER: Final = re.compile(r"\{\{|\{%|\{#")

Renderer: TypeAlias = Callable[[Context], JsonValue]


class Template:
    """A compiled rule value. Immutable: render it from any thread or task."""

    __slots__ = ("_renderer", "_text", "_value")

    def __init__(
        self, value: JsonValue, renderer: Renderer | None, text: Compiled | None = None
    ) -> None:
        self._value = value
        self._renderer = renderer
        self._text = text

    @property
    def is_static(self) -> bool:
        """True when the value holds no template: `render` returns it unchanged."""
        return self._renderer is None

    def render(self, ctx: Context) -> JsonValue:
        """The value with each template rendered in ``ctx`` and read back as Home Assistant
        reads it; `ExpressionError` if one fails.

        A static value is returned as it is (not copied); anything rendered is a fresh copy.
        """
        if self._renderer is None:
            return self._value
        return self._renderer(ctx)

    def render_text(self, ctx: Context) -> str:
        """The stripped text a single-string template renders, not read back as a value
        (what Home Assistant's template condition compares with ``true``); a static string
        is returned stripped. `ExpressionError` if it fails, `TypeError` if not a string."""
        if not isinstance(self._value, str):
            raise TypeError("render_text needs a string value")
        if self._text is None:
            return self._value.strip()
        return _rendered(self._text, ctx).strip()


def has_template(text: str) -> bool:
    """Whether ``text`` holds ``{{``, ``{%`` or ``{#``: a template, not a static text."""
    return _DELIMITER.search(text) is not None


def compile_value(value: JsonValue) -> Template:
    """Compile every template in ``value``; `ExpressionError` says what is wrong and where.

    Cached by the value's JSON text, so calling it for every run costs one ``json.dumps``.
    """
    renderer, text = _compiled(json.dumps(value, ensure_ascii=False))
    return Template(value, renderer, text)


def render(value: JsonValue, ctx: Context) -> JsonValue:
    """``compile_value(value).render(ctx)``."""
    return compile_value(value).render(ctx)


def render_object(value: JsonObject, ctx: Context) -> JsonObject:
    """`render` for a mapping, such as a call's or an event's data."""
    rendered = render(value, ctx)
    if not isinstance(rendered, dict):  # a mapping always renders to a mapping
        raise TypeError(f"expected a mapping, rendered {type(rendered).__name__}")
    return rendered


def check_value(value: JsonValue) -> JsonValue:
    """``value`` unchanged if every template in it compiles; else `ExpressionError`."""
    compile_value(value)
    return value


TemplatedValue: TypeAlias = Annotated[JsonValue, AfterValidator(check_value)]
"""A JSON value whose strings may hold templates, checked at load."""

TemplatedObject: TypeAlias = dict[str, TemplatedValue]
"""A JSON object whose values may hold templates; an error names its key."""


@functools.lru_cache(maxsize=4096)
def _compiled(key: str) -> tuple[Renderer | None, Compiled | None]:
    value = json.loads(key)
    if isinstance(value, str):
        text = _compile_text(value)
        return (None, None) if text is None else (_typed(text), text)
    return _compile_json(value), None


def _typed(text: Compiled) -> Renderer:
    return lambda ctx: typed(_rendered(text, ctx))


def _compile_json(value: JsonValue) -> Renderer | None:
    if isinstance(value, str):
        text = _compile_text(value)
        return None if text is None else _typed(text)
    if isinstance(value, list):
        items = [(_compile_json(item), item) for item in value]
        if all(renderer is None for renderer, _ in items):
            return None
        parts = [renderer or _copy(item) for renderer, item in items]
        return lambda ctx: [part(ctx) for part in parts]
    if isinstance(value, dict):
        fields = {key: (_compile_json(item), item) for key, item in value.items()}
        if all(renderer is None for renderer, _ in fields.values()):
            return None
        named = {key: renderer or _copy(item) for key, (renderer, item) in fields.items()}
        return lambda ctx: {key: part(ctx) for key, part in named.items()}
    return None


def _copy(value: JsonValue) -> Renderer:
    frozen = json.dumps(value)
    return lambda ctx: json.loads(frozen)


def _compile_text(text: str) -> Compiled | None:
    if not has_template(text):
        return None
    try:
        return compile_template(text)
    except TemplateFailure as failure:
        raise ExpressionError(f"invalid template {shown(text)}: {failure}") from None


def _rendered(compiled: Compiled, ctx: Context) -> str:
    try:
        return render_text(compiled, ctx)
    except TemplateFailure as failure:
        raise ExpressionError(f"template {shown(compiled.source)} failed: {failure}") from None
