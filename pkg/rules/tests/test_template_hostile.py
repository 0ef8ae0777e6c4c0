"""Hostile templates: each is refused when its rule loads, or stopped within the render budget.

What an attacker with write access to ``rules/`` would try against a template language:
escapes to Python objects (``''.__class__``, the globals of a function), work that never
ends (nested loops, recursive macros, a fan-out of calls), memory that never ends (``'a' *
10 ** 9``, a text doubled forty times, a list grown by copying), one C call that builds a
giant (``'%0999999999d' % 1``, ``center(10 ** 9)``), Jinja's constant folding at compile
time (``2 ** 100000``), nesting beyond the parser. A refusal at load is located in the file;
a run-time stop must come within the budget's time and memory (each is measured here).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from textwrap import dedent
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruby_rules import load_text
from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import RuleEngine
from ruby_rules.expressions import ExpressionError
from ruby_rules.jinja.budget import MAX_SECONDS
from ruby_rules.templates import compile_value
from ruby_schemas.ha_events import EntityState

NOW = datetime(2026, 11, 20, 21, 30, tzinfo=ZoneInfo("Europe/Paris"))


def state(value: str, **attributes: Any) -> EntityState:
    return EntityState(state=value, attributes=attributes, last_changed=NOW, last_updated=NOW)


STATES = {
    "sensor.big": state("x" * 60_000),
    "group.loop": state("on", entity_id=["group.loop", "group.other"]),
    "group.other": state("on", entity_id=["group.loop", "light.a"]),
    "light.a": state("on"),
}
CTX = Context(
    states=STATES,
    now=NOW,
    trigger=TriggerData(kind="event", id="t", event_id="e", time=NOW, event_type="ping",
                        event_data={"x": "y" * 9000, "n": 1000000000}),
)  # fmt: skip

REFUSED_AT_LOAD = [
    ("{{ ''.__class__ }}", "names starting with '_' are not allowed"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "names starting with '_'"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "names starting with '_'"),
    ("{{ namespace.__init__ }}", "names starting with '_'"),
    ("{{ self.__init__ }}", "names starting with '_'"),
    ("{{ trigger.__class__.__base__ }}", "names starting with '_'"),
    ("{{ trigger['__class__'] }}", "names starting with '_'"),
    ("{{ states.__call__.__globals__ }}", "names starting with '_'"),
    ("{{ __builtins__ }}", "names starting with '_'"),
    ("{% macro m() %}{{ m._func }}{% endmacro %}", "names starting with '_'"),
    ("{{ lipsum(10 ** 9) }}", "unknown function 'lipsum'"),
    ("{{ joiner() }}", "unknown function 'joiner'"),
    ("{{ 2 ** 100000 }}", "is too large a number"),
    ("{{ 9 ** 9999 }}", "is too large a number"),
    ("{{ 'a' * 1000000000 }}", "would build a value of 1,000,000,000 characters"),
    ("{{ [0] * 1000000000 }}", "would build a value of 1,000,000,000"),
    ("{{ (1, 2) * 1000000000 }}", "would build a value of 2,000,000,000"),
    ("{{ '%0999999999d' % 1 }}", "widths and precisions in a format are at most 100"),
    ("{% include 'secrets.yaml' %}", "cannot load other templates"),
    ("{% import 'x' as y %}", "cannot load other templates"),
    ("{% extends 'x' %}", "cannot load other templates"),
    ("{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}", "recursive loops"),
    ("{{ " + "(" * 100 + "1" + ")" * 100 + " }}", "nested more than 64 levels"),
    ("{{ " + "[" * 300 + "]" * 300 + " }}", "nested more than 64 levels"),
    ("{% if 1 %}" * 70 + "x" + "{% endif %}" * 70, "nested more than 64 levels"),
    ("{% for a in [1] %}" * 22 + "x" + "{% endfor %}" * 22, "nested too deeply to compile"),
    ("{{ " + "-" * 5000 + "1 }}", "nested more than 64 levels"),
    ("{{ 1 }}" * 1500, "characters; at most 10,000 allowed"),
    ("{{ 'a' is match('((a{100}){100}){100}') }}", "repetitions of a regular expression"),
    ("{{ 'a' | regex_replace('" + "a" * 201 + "', '') }}", "at most 200 characters"),
]


@pytest.mark.parametrize(("template", "message"), REFUSED_AT_LOAD)
def test_a_hostile_template_is_a_located_error_when_its_rule_loads(
    template: str, message: str
) -> None:
    text = dedent("""\
        rules:
          - id: hostile
            description: one hostile template
            triggers: [{kind: event, event_type: ping}]
            actions:
              - kind: publish
                event_type: pong
                data:
                  x: VALUE
        """).replace("VALUE", json.dumps(template))
    started = time.monotonic()
    result = load_text(text, "r.yaml")
    assert time.monotonic() - started < 5
    [error] = result.errors
    assert (error.line, error.column) == (9, 14)  # where the value starts
    assert "rule 'hostile': actions[0].data.x: invalid template" in error.message
    assert message in error.message


RUNAWAY = (
    "more than 100,000 steps|ran longer than 0.5 s|the output has more than 65,536 characters"
    "|more than 2,000,000 characters or items in all"
)
"""Which limit stops a runaway first depends on the machine's load ('|': or)."""
STOPPED_AT_RUN = [
    ("{{ 'a' * trigger.event.data.n }}", "would build a value of 1,000,000,000 characters"),
    ("{{ [0] * trigger.event.data.n }}", "would build a value"),
    ("{{ 2 ** trigger.event.data.n }}", "is too large a number"),
    ("{{ (2 ** 300) * (2 ** 300) }}", "too large a number"),
    ("{{ range(trigger.event.data.n) | list }}", "a range has at most 100,000 items"),
    ("{{ range(100000) | list }}", "at most 65,536"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     RUNAWAY),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
     RUNAWAY),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls nested more than 50 deep"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
     RUNAWAY),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s | length }}", "would build a value of 131,072 characters"),
    ("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}"
     "{% endfor %}{{ ns.l | length }}", RUNAWAY),
    ("{% set s %}{% for i in range(100000) %}0123456789012345678901234567890123456789"
     "{% endfor %}{% endset %}{{ s | length }}", RUNAWAY),
    ("{{ 'x' | center(trigger.event.data.n) }}", "would build a value of 1,000,000,000"),
    ("{{ 'a'.ljust(trigger.event.data.n) }}", "would build a value of 1,000,000,000"),
    ("{{ states('sensor.big').replace('x', 'xxxx') }}", "would build a value of 240,000"),
    ("{{ [states('sensor.big')] * 60000 }}", "would write a text of more than 65,536"),
    ("{{ ([states('sensor.big')] * 60000) | join(',') }}", "would build a value of"),
    ("{{ states('sensor.big') ~ states('sensor.big') }}", "would build a value of 120,000"),
    ("{{ '{:>999999999}'.format(1) }}", "widths and precisions in a format are at most 100"),
    ("{{ '%*d' % (trigger.event.data.n, 1) }}", "widths and precisions in a format"),
    ("{{ '%s' | format(states('sensor.big')) ~ states('sensor.big') }}", "would build a value"),
    ("{{ expand('group.loop') | map(attribute='entity_id') | list == ['light.a'] }}", None),
    ("{{ timedelta(days=trigger.event.data.n) }}", "must have magnitude"),
    ("{{ now().now() }}", "access to attribute 'now' of 'datetime' object is unsafe"),
    ("{{ now().fromtimestamp(0) }}", "unsafe"),
    ("{{ ''.join(['a'] * 60000) ~ ''.join(['a'] * 60000) }}", "would build a value"),
    # str() of a list that holds one big text 60,000 times (3.6 GB of text, 0.5 MB of list)
    ("{{ '%s' % ([states('sensor.big')] * 60000) }}", "would write a text of more than 65,536"),
    ("{{ '{}'.format([states('sensor.big')] * 60000) }}", "would write a text of more"),
    ("{{ ([states('sensor.big')] * 60000) | upper }}", "would write a text of more"),
    ("{{ ([states('sensor.big')] * 60000) is lower }}", "would write a text of more"),
    ("{{ ([states('sensor.big')] * 60000) | tojson }}", "would write a text of more"),
    ("{{ ([states('sensor.big')] * 60000) | to_json }}", "would write a text of more"),
    ("{{ 'x' | replace([states('sensor.big')] * 60000, 'y') }}", "would write a text of more"),
    ("{{ float([states('sensor.big')] * 60000) }}", "float got invalid input ['xxxx"),
    ("{% set ns = namespace(l=[states('sensor.big')] * 60000) %}{{ ns }}", "would write a text"),
    ("{% set ns = namespace(l=[]) %}{% for i in range(60000) %}{% set ns.l = [ns.l] %}"
     "{% endfor %}{{ ns.l }}", "calls nested too deep|more than 100,000 steps|ran longer"),
    # regular expressions: one C call each, interrupted by the regex package's timeout
    ("{{ states('sensor.big') is search('(x+x+)+y') }}", "a regular expression ran past the"),
    ("{{ states('sensor.big') | regex_match('(x|xx)+z') }}", "a regular expression ran past"),
    ("{{ states('sensor.big') | regex_replace('x', 'xx') }}", "more than 65,536 characters"),
    ("{{ 'a' is match(trigger.event.data.x ~ '{1000}{1000}') }}", "at most 200 characters"),
    # what would change the engine's data, read the clock or a file
    ("{{ dict.update(trigger.event.data, x=1) }}", "access to attribute 'update' of 'type'"),
    ("{{ now().tzinfo.no_cache('UTC') }}", "access to attribute 'no_cache'"),
    ("{{ now().tzinfo.clear_cache() }}", "access to attribute 'clear_cache'"),
    ("{% for s in states %}{% for t in states %}{% for u in states %}{% for v in states %}"
     "{% for w in range(100000) %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
     RUNAWAY),
]  # fmt: skip


@contextmanager
def measured() -> Iterator[Callable[[], tuple[float, int]]]:
    """Seconds taken and peak bytes allocated inside the block."""
    tracemalloc.start()
    started = time.monotonic()
    result: list[tuple[float, int]] = []
    try:
        yield lambda: result[0]
    finally:
        result.append((time.monotonic() - started, tracemalloc.get_traced_memory()[1]))
        tracemalloc.stop()


@pytest.mark.parametrize(("template", "reason"), STOPPED_AT_RUN)
def test_a_hostile_template_is_stopped_within_the_budget(template: str, reason: str | None) -> None:
    compiled = compile_value(template)  # compiles: only running it shows what it does
    with measured() as spent:
        if reason is None:
            assert compiled.render(CTX) is True  # a group cycle ends: each group expands once
        else:
            with pytest.raises(ExpressionError) as caught:
                compiled.render(CTX)
            assert str(caught.value).startswith("template ")
            assert any(part in str(caught.value) for part in reason.split("|")), caught.value
    seconds, peak = spent()
    # The budget: 0.5 s of wall clock, checked at each checkpoint whatever the machine's load
    # (the margin is for tracemalloc and the scheduler of a busy machine; what it stops would
    # run for hours), and 2,000,000 characters built (~8 MB at most in Python).
    assert seconds < MAX_SECONDS * 10
    assert peak < 64 * 1024**2


Hook = Callable[[str, tuple[Any, ...]], None]
_HOOKS: list[Hook] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    for hook in tuple(_HOOKS):
        hook(event, args)


sys.addaudithook(_dispatch)  # an audit hook cannot be removed: this one forwards to _HOOKS


def test_rendering_hostile_templates_runs_no_code_opens_nothing_imports_nothing() -> None:
    templates = [compile_value(template) for template, _ in STOPPED_AT_RUN]
    escapes = [compile_value(t) for t in (
        "{{ cycler }}", "{{ joiner }}", "{{ config }}", "{{ request }}", "{{ self }}",
"{{ trigger.event.data.items() | list }}",
        "{{ states | map(attribute='attributes') | list }}", "{{ dict.fromkeys('ab') }}",
    )]  # fmt: skip
    events: list[str] = []
    # Not "compile": reading a result back (ast.literal_eval) parses it, and runs nothing.
    watched = ("exec", "import", "open", "os.", "subprocess", "socket", "ctypes", "code.")
    _HOOKS.append(lambda event, args: events.append(event) if event.startswith(watched) else None)
    try:
        for template in [*templates, *escapes]:
            with suppress(ExpressionError):
                template.render(CTX)
    finally:
        _HOOKS.pop()
    assert events == []


def test_a_rule_whose_template_runs_away_fails_and_the_other_rules_still_fire() -> None:
    text = dedent("""\
        rules:
          - id: runaway
            description: a template that would loop for hours
            triggers: [{kind: state, entity_id: switch.fan, to: "on"}]
            actions:
              - kind: publish
                event_type: never
                data:
                  n: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
          - id: good
            description: the same change, another rule
            triggers: [{kind: state, entity_id: switch.fan, to: "on"}]
            conditions:
              - {kind: expression, value: "{{ trigger.to_state.state == 'on' }}"}
            actions:
              - kind: call
                service: light.turn_on
                target: {entity_id: light.a}
                data: {brightness: "{{ state_attr('light.a', 'brightness') | int(0) + 10 }}"}
        """)  # noqa: E501 - the template is one YAML line
    loaded = load_text(text, "t.yaml")
    assert loaded.ok, loaded.errors
    engine = RuleEngine(tz=UTC)
    engine.set_states({"switch.fan": state("off"), "light.a": state("on", brightness=100)})
    engine.set_rules(loaded.rules, NOW)
    for minute in range(3):
        at = NOW + timedelta(minutes=minute)
        started = time.monotonic()
        effects = engine.on_state_changed(
            event_id=f"fan-{minute}",
            entity_id="switch.fan",
            old=state("off"),
            new=EntityState(state="on", attributes={}, last_changed=at, last_updated=at),
            now=at,
        )
        assert time.monotonic() - started < MAX_SECONDS * 10  # the budget, and a busy machine
        traces = {trace.rule_id: trace for trace in effects.traces}
        assert traces["runaway"].status == "failed"
        reason = traces["runaway"].reason
        assert "more than 100,000 steps" in reason or "ran longer than 0.5 s" in reason
        assert [(c.service, c.data) for c in effects.commands] == [("turn_on", {"brightness": 110})]


# --- fuzz: random templates compile or raise ExpressionError, render or raise it ------------

TOKENS = [
    "{{", "}}", "{%", "%}", "{#", "#}", " ", "if", "elif", "else", "endif", "for", "in",
    "endfor", "set", "=", "macro", "endmacro", "call", "endcall", "filter", "endfilter",
    "with", "endwith", "namespace", "loop", "states", "states.light", ".", "state", "(", ")",
    "[", "]", ",", ":", "'sensor.big'", "'light.a'", "'on'", "1", "0", "2.5", "-", "+", "*",
    "**", "/", "//", "%", "~", "|", "int", "float(0)", "round(1)", "join", "list", "map",
    "is", "defined", "not", "and", "or", "none", "true", "range(9)", "trigger", "event",
    "data", "n", "x", "now()", "expand('group.loop')", "is_state", "state_attr", "_", "__class__",
    "'", '"', "\\", "\n", "area_name", "self", "caller", "10 ** 9", "center(99)",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)))
def test_random_templates_compile_or_raise_expression_error(source: str) -> None:
    try:
        template = compile_value(source)
    except ExpressionError:
        return
    for ctx in (CTX, Context(states={}, now=NOW)):
        with suppress(ExpressionError):
            json.dumps(template.render(ctx), allow_nan=False)


ATOMS = st.sampled_from(
    [
        "1", "-2.5", "'a'", "''", "'on'", "'3.5'", "none", "true", "[]", "{}", "[1, 'x']",
        "trigger", "trigger.event.data", "trigger.event.data.n", "now()", "states.light",
        "states('sensor.big')", "state_attr('light.a', 'x')", "expand('group.loop')",
        "range(5)", "timedelta(hours=1)", "namespace(a=1)",
    ]
)  # fmt: skip
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "~", "<", "==", "in", "not in", "and", "or"]
FILTERS = ["int", "float(0)", "round(1)", "default(0)", "lower", "string", "list", "length",
           "join(',')", "first", "sort", "unique", "sum", "to_json", "bool(false)"]  # fmt: skip


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.sampled_from(["state", "attributes", "x", "hour"])).map(".".join),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    )


@settings(max_examples=500, deadline=None)
@given(st.recursive(ATOMS, _combine, max_leaves=10), st.booleans())
def test_well_formed_templates_render_json_or_raise_expression_error(
    expression: str, in_loop: bool
) -> None:
    source = (
        f"{{% for i in range(3) %}}{{{{ {expression} }}}}{{% endfor %}}"
        if in_loop
        else f"{{{{ {expression} }}}}"
    )
    try:
        template = compile_value(source)
    except ExpressionError:
        return
    with suppress(ExpressionError):
        json.dumps(template.render(CTX), allow_nan=False)
