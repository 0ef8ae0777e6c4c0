"""Expressions in rule values: results, operators, functions, filters, limits and attacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from ruby_rules import load_text
from ruby_rules.context import Context, TriggerData
from ruby_rules.expressions import MAX_SOURCE, ExpressionError
from ruby_rules.processors.actions.call import CallAction
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_rules.templates import check_value, compile_value, render
from ruby_schemas.ha_events import EntityState

NOW = datetime(2026, 11, 20, 21, 30, 5, tzinfo=UTC)  # a Friday


def state(value: str, **attributes: JsonValue) -> EntityState:
    changed = NOW - timedelta(minutes=1)
    return EntityState(
        state=value, attributes=attributes, last_changed=changed, last_updated=changed
    )


STATES = {
    "sensor.power_usage": state("3100.5", unit_of_measurement="W"),
    "light.hallway": state("on", brightness=128, rgb=[255, 200, 0]),
    "sensor.text": state("abc"),
    "input_boolean.guest_mode": state("off"),
}
STATE_TRIGGER = TriggerData(
    kind="state",
    id="motion",
    event_id="msg-1",
    time=NOW,
    entity_id="light.hallway",
    from_state=state("off"),
    to_state=state("on", brightness=128),
)
EVENT_TRIGGER = TriggerData(
    kind="event",
    id="0",
    event_id="msg-2",
    time=NOW,
    event_type="zha_event",
    event_data={"command": "double", "args": [1, 2], "device": {"name": "button"}},
)
CTX = Context(states=STATES, now=NOW, trigger=STATE_TRIGGER)


def ev(expression: str, ctx: Context = CTX) -> JsonValue:
    """The typed result of one expression."""
    return render("{{ " + expression + " }}", ctx)


# --- results --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("42", 42),
        ("-1.5", -1.5),
        ("'text'", "text"),
        ("True", True),
        ("true", True),
        ("false", False),
        ("None", None),
        ("none", None),
        ("null", None),
        ("[1, 'a', none]", [1, "a", None]),
        ("(1, 2)", [1, 2]),
        ("{'a': [1, {'b': true}]}", {"a": [1, {"b": True}]}),
    ],
)
def test_a_single_expression_gives_a_typed_result(expression: str, expected: JsonValue) -> None:
    assert ev(expression) == expected
    assert type(ev(expression)) is type(expected)


def test_whitespace_around_a_single_expression_keeps_the_type() -> None:
    assert render("  {{ 1 + 1 }}\n", CTX) == 2
    assert render("{{1+1}}", CTX) == 2


def test_expressions_inside_text_are_interpolated() -> None:
    assert render("power {{ states('sensor.power_usage') }} W", CTX) == "power 3100.5 W"
    assert render("{{ 1 }}{{ 2 }}", CTX) == "12"
    assert render("[{{ none }}] {{ true }} {{ 1.5 }}", CTX) == "[] True 1.5"
    assert render("rgb={{ state_attr('light.hallway', 'rgb') }}", CTX) == "rgb=[255, 200, 0]"
    assert render("{{ {'a': 1} }}!", CTX) == '{"a": 1}!'


def test_an_expression_may_span_lines() -> None:
    assert render("{{ 1 +\n 2 }}", CTX) == 3


def test_values_are_rendered_recursively_but_keys_never() -> None:
    value: JsonValue = {
        "{{ 1 }}": ["{{ 1 + 1 }}", {"n": "{{ 'x' | upper }}"}, 3],
        "plain": {"k": [1, 2]},
    }
    rendered = render(value, CTX)
    assert rendered == {"{{ 1 }}": [2, {"n": "X"}, 3], "plain": {"k": [1, 2]}}
    assert isinstance(rendered, dict)
    assert rendered["plain"] is not value["plain"]  # type: ignore[call-overload, index]


def test_static_values_are_returned_unchanged() -> None:
    value: JsonValue = {"brightness_pct": 60, "name": "a } and { b", "list": [1, "x"]}
    template = compile_value(value)
    assert template.is_static
    assert template.render(CTX) is value
    assert compile_value(5).is_static
    assert not compile_value(["a", "{{ 1 }}"]).is_static
    assert check_value(value) is value


# --- operators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("'a' + 'b'", "ab"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("5 - 7", -2),
        ("3 * 1.5", 4.5),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("-(2)", -2),
        ("+2", 2),
        ("not 0", True),
        ("not 'x'", False),
        ("1 == 1.0", True),
        ("'a' != 'b'", True),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("'b' > 'a'", True),
        ("1 >= 2", False),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("'ell' in 'hello'", True),
        ("2 in [1, 2]", True),
        ("'a' in {'a': 1}", True),
        ("'z' not in {'a': 1}", True),
        ("'x' in none", False),
        ("0 or 'fallback'", "fallback"),
        ("'first' or 1 / 0", "first"),
        ("0 and 1 / 0", 0),
        ("1 and 'last'", "last"),
        ("'yes' if 1 > 0 else 'no'", "yes"),
        ("'yes' if [] else 'no'", "no"),
        ("1 + 2 * 3", 7),
    ],
)
def test_operators(expression: str, expected: JsonValue) -> None:
    assert ev(expression) == expected


# --- what an expression reads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("trigger.kind", "state"),
        ("trigger.id", "motion"),
        ("trigger.event_id", "msg-1"),
        ("trigger.entity_id", "light.hallway"),
        ("trigger.time", NOW.isoformat()),
        ("trigger.from_state.state", "off"),
        ("trigger.to_state.state", "on"),
        ("trigger.to_state.entity_id", "light.hallway"),
        ("trigger.to_state.attributes.brightness", 128),
        ("trigger['to_state']['attributes']['brightness']", 128),
        ("trigger.to_state.last_changed", (NOW - timedelta(minutes=1)).isoformat()),
        ("trigger.to_state.last_updated", (NOW - timedelta(minutes=1)).isoformat()),
        ("trigger.event", None),
    ],
)
def test_the_trigger_of_a_state_change(expression: str, expected: JsonValue) -> None:
    assert ev(expression) == expected


def test_the_trigger_of_an_event() -> None:
    ctx = Context(states=STATES, now=NOW, trigger=EVENT_TRIGGER)
    assert ev("trigger.event.event_type", ctx) == "zha_event"
    assert ev("trigger.event.data.command", ctx) == "double"
    assert ev("trigger.event.data['device'].name", ctx) == "button"
    assert ev("trigger.event.data.args[1]", ctx) == 2
    assert ev("trigger.event.data.args[-1]", ctx) == 2
    assert ev("trigger.event.data", ctx) == EVENT_TRIGGER.event_data
    assert ev("trigger.to_state", ctx) is None


@pytest.mark.parametrize(
    "expression",
    [
        "trigger.nothing",
        "trigger.nothing.deeper.still",
        "trigger.to_state.attributes.missing",
        "trigger['event']['data']",
        "trigger.from_state.attributes[0]",
        "state_attr('light.hallway', 'rgb')[3]",
        "state_attr('light.hallway', 'rgb')[-4]",
        "none.anything",
        "{'a': 1}[2]",
    ],
)
def test_missing_keys_and_reads_of_none_give_none(expression: str) -> None:
    assert ev(expression) is None


def test_without_a_trigger_everything_under_it_is_none() -> None:
    ctx = Context(states=STATES, now=NOW)
    assert ev("trigger", ctx) is None
    assert ev("trigger.to_state.state", ctx) is None
    assert render("by {{ trigger.entity_id }}", ctx) == "by "


def test_now_gives_the_parts_of_the_local_time() -> None:
    assert ev("now()") == {
        "year": 2026,
        "month": 11,
        "day": 20,
        "hour": 21,
        "minute": 30,
        "second": 5,
        "weekday": 4,
        "iso": NOW.isoformat(),
    }
    assert ev("now().hour >= 21 and now().weekday < 5") is True


# --- functions and filters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("states('sensor.power_usage')", "3100.5"),
        ("states('sensor.missing')", None),
        ("states(none)", None),
        ("state_attr('light.hallway', 'brightness')", 128),
        ("state_attr('light.hallway', 'missing')", None),
        ("state_attr('light.missing', 'brightness')", None),
        ("is_state('light.hallway', 'on')", True),
        ("is_state('light.hallway', ['off', 'on'])", True),
        ("is_state('light.hallway', 'off')", False),
        ("is_state('light.missing', 'on')", False),
        ("int('12')", 12),
        ("int(' 12.7 ')", 12),
        ("int(3.9)", 3),
        ("int(true)", 1),
        ("int('abc', -1)", -1),
        ("float('3100.5')", 3100.5),
        ("float(2)", 2.0),
        ("float('nan', 0)", 0),
        ("str(5)", "5"),
        ("str(none)", "None"),
        ("str([1])", "[1]"),
        ("round(2.567, 2)", 2.57),
        ("round(2.6)", 3),
        ("round(1234, -2)", 1200),
        ("abs(-3)", 3),
        ("min(3, 1, 2)", 1),
        ("min([3, 1, 2])", 1),
        ("max('a', 'b')", "b"),
        ("len('abc')", 3),
        ("len([1, 2])", 2),
        ("len({'a': 1})", 1),
        ("bool('on')", True),
        ("bool('Yes')", True),
        ("bool('off')", False),
        ("bool(2)", True),
        ("bool(0)", False),
        ("bool(none)", False),
    ],
)
def test_functions(expression: str, expected: JsonValue) -> None:
    assert ev(expression) == expected
    assert type(ev(expression)) is type(expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("states('sensor.power_usage') | float", 3100.5),
        ("states('sensor.power_usage') | int", 3100),
        ("states('sensor.text') | int(0)", 0),
        ("states('sensor.text') | float(-1)", -1),
        ("states('sensor.power_usage') | float | round(-2)", 3100.0),
        ("3.14159 | round(1)", 3.1),
        ("2.5 | round", 2),
        ("states('sensor.missing') | default(5)", 5),
        ("0 | default(5)", 0),
        ("'Hello' | lower", "hello"),
        ("'Hello' | upper", "HELLO"),
        ("-2 | abs", 2),
        ("[3, 4] | max", 4),
        ("[3, 4] | min", 3),
        ("'abc' | len", 3),
        ("'on' | bool", True),
        ("12 | str", "12"),
        ("states('sensor.power_usage') | float > 3000", True),
        ("1 + 2 | str", "3"),  # '|' binds looser than '+'
        ("1 + (2 | str | int)", 3),
    ],
)
def test_filters(expression: str, expected: JsonValue) -> None:
    assert ev(expression) == expected


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("int('abc')", "cannot convert text 'abc' to int"),
        ("float('abc')", "cannot convert text 'abc' to float"),
        ("states('sensor.text') | float", "cannot convert text 'abc' to float"),
        ("1 / 0", "division by zero in '/'"),
        ("1 % 0", "division by zero in '%'"),
        ("1 < 'a'", "cannot compare a number with text 'a'"),
        ("none > 1", "cannot compare nothing with a number"),
        ("'a' * 3", "'*' needs numbers; got text 'a' and a number"),
        ("'a' - 'b'", "'-' needs numbers"),
        ("1 + 'a'", "'+' needs two numbers, two texts or two lists"),
        ("'abc'.upper", "cannot read '.upper' of text 'abc'"),
        ("'abc'[0]", "cannot read '[...]' of text 'abc'"),
        ("-'a'", "a sign needs a number"),
        ("{1: 2}", "a mapping key must be text"),
        ("round('a')", "round() needs a number"),
        ("round(1.5, 99)", "round() needs digits from -15 to 15"),
        ("min([])", "min() of an empty list"),
        ("max(1, 'a')", "max() needs values that compare"),
        ("len(5)", "len() needs text, a list or a mapping"),
        ("5 | lower", "'lower' needs text"),
        ("states(5)", "states() needs an entity id as text"),
        ("state_attr('light.hallway', 5)", "state_attr() needs an attribute name as text"),
        ("is_state('light.hallway', 5)", "is_state() needs a state as text"),
        ("1 in 'abc'", "'in' text needs text on its left"),
        ("1 in 5", "'in' needs text, a list or a mapping"),
        ("1e300 * 1e300", "not a finite number"),
        ("int(1e200)", "too large a number"),
    ],
)
def test_evaluation_errors_quote_the_expression(expression: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        ev(expression)
    assert str(caught.value).startswith(f"expression '{{{{ {expression} }}}}' failed: ")
    assert reason in str(caught.value)


def test_interpolated_text_fails_the_same_way() -> None:
    with pytest.raises(ExpressionError, match=r"expression '\{\{ 1 / 0 \}\}' failed"):
        render("x = {{ 1 / 0 }}", CTX)


def test_results_are_bounded() -> None:
    big = Context(states={"sensor.big": state("x" * 6000), "sensor.n": state("9" * 99)}, now=NOW)
    with pytest.raises(ExpressionError, match="too large a number"):
        ev("(states('sensor.n') | int) * 100", big)
    with pytest.raises(ExpressionError, match="at most 10000 allowed"):
        ev("states('sensor.big') + states('sensor.big')", big)
    with pytest.raises(ExpressionError, match="at most 10000"):
        render("{{ states('sensor.big') }}{{ states('sensor.big') }}", big)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ 1 + }}", "invalid expression '{{ 1 + }}': invalid syntax at the end: expected an "),
        ("{{ 1 2 }}", "invalid expression '{{ 1 2 }}': invalid syntax at character 3: expected"),
        ("{{ foo }}", "unknown name 'foo': expected trigger, or a function such as states(...)"),
        ("{{ open('x') }}", "function 'open' is not allowed: expected one of states, state_attr"),
        ("{{ states }}", "function 'states' must be called: expected states('sensor.x')"),
        ("{{ states('a', 'b') }}", "wrong number of arguments for 'states': expected states("),
        ("{{ now(1) }}", "wrong number of arguments for 'now': expected now()"),
        ("{{ round(x=1) }}", "round() takes no named arguments"),
        ("{{ 1 | nope }}", "unknown filter 'nope': expected one of int, float, round, default"),
        ("{{ 1 | round(1, 2) }}", "wrong number of arguments for 'round': expected x | round"),
        ("{{ 1 | 2 }}", "expected a filter after '|'"),
        ("{{ a is b }}", "'is' is not supported: expected ==, !="),
        ("{{ }}", "empty expression '{{ }}': expected an expression"),
        ("{{ 1", "unclosed '{{' in '{{ 1': expected '}}' after the expression"),
        ("{% if x %}on{% endif %}", "'{%' statements are not supported"),
        ("{{ 1e999 }}", "not a finite number"),
        ("{{ b'x' }}", "the literal b'x' is not supported"),
        ("{{ ... }}", "the literal Ellipsis is not supported"),
        ("{{ 1j }}", "the literal 1j is not supported"),
    ],
)
def test_compile_errors_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_value(text)
    assert message in str(caught.value)


# --- attacks --------------------------------------------------------------------------------

ATTACKS = [
    "__import__('os')",
    "__import__('os').system('touch /tmp/pwned')",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "trigger.__class__",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('1')",
    "compile('1', 'x', 'eval')",
    "getattr(trigger, 'x')",
    "globals()",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in [1]]",
    "{x for x in [1]}",
    "{x: 1 for x in [1]}",
    "(x for x in [1])",
    "2 ** 64",
    "9 ** 9 ** 9",
    "'a'.upper()",
    "states.__call__('x')",
    "'{}'.format(1)",
    "(x := 1)",
    "[*[1]]",
    "{**{}}",
    "f'{1}'",
    "{1, 2}",
    "'abc'[0:2]",
    "~1",
    "1 << 10000",
    "1 & 1",
    "await x",
    "_",
    "int._x",
    "trigger._secret",
    "now().__class__",
    "(yield)",
    "1 @ 1",
    "1 if True else __import__('os')",
]


Hook = Callable[[str, tuple[Any, ...]], None]
_HOOKS: list[Hook] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    for hook in tuple(_HOOKS):
        hook(event, args)


sys.addaudithook(_dispatch)  # an audit hook cannot be removed: this one forwards to _HOOKS


@contextmanager
def watching() -> Iterator[list[str]]:
    """The audit events of code running (exec, import, open, processes) inside the block."""
    events: list[str] = []
    watched = ("exec", "import", "open", "os.system", "os.exec", "os.posix_spawn", "subprocess")

    def record(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(watched):
            events.append(event)

    _HOOKS.append(record)
    try:
        yield events
    finally:
        _HOOKS.remove(record)


@pytest.mark.parametrize("expression", ATTACKS)
def test_attacks_are_refused_when_compiling(expression: str) -> None:
    with watching() as events, pytest.raises(ExpressionError, match="invalid expression"):
        compile_value("{{ " + expression + " }}")
    assert events == []


def test_an_expression_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with watching() as events:
        for expression in (f"open('{marker}', 'w')", f"__import__('os').system('touch {marker}')"):
            with pytest.raises(ExpressionError):
                render("{{ " + expression + " }}", CTX)
        assert render("{{ '__import__(\"os\")' }}", CTX) == '__import__("os")'  # just text
        assert render("{{ trigger['__class__'] }}", CTX) is None  # a key of our data, no more
    assert events == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1" * (MAX_SOURCE + 1), "characters; at most 1000 allowed"),
        ("+".join(["1"] * 150), "syntax nodes; at most 200 allowed"),
        ("not " * 40 + "1", "nested more than 32 levels deep"),
        ("[" * 40 + "]" * 40, "nested more than 32 levels deep"),
        ("(" * 300 + "1" + ")" * 300, "too many nested parentheses"),
        ("-" * 900 + "1", "invalid expression"),
        ("9" * 101, "too large a number"),
    ],
)
def test_huge_inputs_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match="invalid expression") as caught:
        compile_value("{{ " + expression + " }}")
    assert message in str(caught.value)
    assert len(str(caught.value)) < 400  # the expression is shortened in the message


TOKENS = [
    "states", "state_attr", "is_state", "now", "int", "float", "round", "default", "lower",
    "trigger", ".", "to_state", "attributes", "[", "]", "(", ")", "{", "}", ",", ":", "'a'",
    "'sensor.text'", "'light.hallway'", "1", "0", "2.5", "-", "+", "*", "/", "//", "%", "**",
    "|", "<", "==", "in", "not", "and", "or", "if", "else", "none", "true", "lambda", "_",
    "__class__", "x", " ", "'", '"', "\\", "\n", "{{", "}}", "{%", "#",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(TOKENS), max_size=25).map("".join)))
def test_random_expressions_compile_or_raise_expression_error(source: str) -> None:
    try:
        template = compile_value("{{ " + source + " }}")
    except ExpressionError:
        return
    for ctx in (CTX, Context(states={}, now=NOW)):
        with suppress(ExpressionError):
            template.render(ctx)


ATOMS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "'a'", "''", "'on'", "'3.5'", "none", "true", "[]", "{}", "trigger",
            "trigger.to_state", "trigger.event.data", "now()", "states('sensor.power_usage')",
            "states('sensor.text')", "state_attr('light.hallway', 'rgb')",
        ]
    ),
)  # fmt: skip
OPERATORS = ["+", "-", "*", "/", "//", "%", "<", ">=", "==", "!=", "in", "not in", "and", "or"]
FILTER_CALLS = ["int", "float", "round(1)", "default(0)", "lower", "upper", "str", "bool", "len"]
FUNCTION_NAMES = ["int", "float", "str", "bool", "abs", "len", "round", "min", "max", "states"]


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(inner, st.sampled_from(FILTER_CALLS)).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(st.sampled_from(FUNCTION_NAMES), inner).map(lambda t: f"{t[0]}({t[1]})"),
        inner.map(lambda x: f"(not {x})"),
        inner.map(lambda x: f"(-{x})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.sampled_from(["state", "attributes", "x"])).map(".".join),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


@settings(max_examples=500, deadline=None)
@given(st.recursive(ATOMS, _combine, max_leaves=12))
def test_well_formed_expressions_give_json_or_raise_expression_error(source: str) -> None:
    try:
        template = compile_value("{{ " + source + " }}")
    except ExpressionError:
        return
    for ctx in (CTX, Context(states={}, now=NOW)):
        with suppress(ExpressionError):
            json.dumps(template.render(ctx), allow_nan=False)


# --- in rules -------------------------------------------------------------------------------


def load(text: str) -> Any:
    return load_text(dedent(text), "r.yaml")


RULE = """\
rules:
  - id: x
    description: Expressions in a rule.
    triggers: [{kind: state, entity_id: light.hallway}]
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: "{{ trigger.entity_id }}"}
        data:
          brightness: "{{ (trigger.to_state.attributes.brightness | int) + 10 }}"
          name: "the {{ trigger.entity_id }}"
"""


def test_a_bad_expression_in_call_data_is_located() -> None:
    result = load(RULE.replace("| int) + 10", "| int) +"))
    assert result.rules == ()
    assert [str(error) for error in result.errors] == [
        "r.yaml:10:23: rule 'x': actions[0].data.brightness: invalid expression "
        "'{{ (trigger.to_state.attributes.brightness | int) + }}': invalid syntax at the end: "
        "expected an expression such as states('sensor.power') | float > 3000"
    ]


def test_bad_expressions_in_targets_publish_data_and_conditions_are_located() -> None:
    text = RULE.replace('trigger.entity_id }}"}', 'trigger.entity }} x"}').replace(
        "    actions:\n",
        "    conditions:\n      - {kind: expression, value: always}\n    actions:\n"
        "      - {kind: publish, event_type: e, data: {n: [1, '{{ foo }}']}}\n",
    )
    messages = [str(error) for error in load(text).errors]
    assert messages[0] == (
        "r.yaml:6:35: rule 'x': conditions[0].value: 'always' holds no expression: expected "
        "one such as \"{{ states('sensor.power') | float > 3000 }}\""
    )
    assert messages[1].startswith(
        "r.yaml:8:50: rule 'x': actions[0].data.n: invalid expression '{{ foo }}': unknown name"
    )
    assert len(messages) == 2  # '{{ trigger.entity }} x' compiles: checked when rendered


def test_a_plain_invalid_entity_id_keeps_its_message() -> None:
    [error] = load(RULE.replace('"{{ trigger.entity_id }}"', "Light.Bad")).errors
    assert "actions[0].target.entity_id: invalid entity id 'Light.Bad': expected" in str(error)


def build(config: dict[str, Any]) -> Any:
    """The processor of a trigger, condition or action config, found by its kind."""
    registry = default_registry()
    role: Role = "condition" if config["kind"] in registry.kinds("condition") else "action"
    return registry.build(registry.config(role, config["kind"]).model_validate(config))


def test_call_renders_its_target_and_data() -> None:
    [rule] = load(RULE).rules
    call = CallAction(rule.config.actions[0])
    target, data = call.render_call(CTX)
    assert target == {"entity_id": ["light.hallway"]}
    assert data == {"brightness": 138, "name": "the light.hallway"}


def test_call_targets_may_render_lists_and_refuse_non_entity_ids() -> None:
    target = {
        "entity_id": ["light.a", "{{ ['light.b', 'light.c'] }}"],
        "area_id": "kitchen",
        "device_id": ["d1", "d2"],
    }
    call = build({"kind": "call", "service": "light.turn_on", "target": target})
    assert call.render_call(CTX) == (
        {
            "entity_id": ["light.a", "light.b", "light.c"],
            "area_id": ["kitchen"],
            "device_id": ["d1", "d2"],
        },
        {},
    )
    for bad in ("{{ trigger.to_state.state }}", "{{ [] }}", "{{ none }}", "{{ [1] }}"):
        call = build({"kind": "call", "service": "light.turn_on", "target": {"entity_id": bad}})
        with pytest.raises(ExpressionError, match="expected an entity id such as"):
            call.render_call(CTX)


def test_publish_renders_its_data() -> None:
    data = {"watts": "{{ states('sensor.power_usage') | float }}", "unit": "W"}
    publish = build({"kind": "publish", "event_type": "e", "data": data})
    assert publish.render_data(CTX) == {"watts": 3100.5, "unit": "W"}


# --- the expression condition ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ("{{ true }}", True),
        ("{{ 1 }}", True),
        ("{{ -0.5 }}", True),
        ("{{ 'on' }}", True),
        ("{{ 'True' }}", True),
        ("{{ 'yes' }}", True),
        ("{{ false }}", False),
        ("{{ 0 }}", False),
        ("{{ 'off' }}", False),
        ("{{ 'anything' }}", False),
        ("{{ none }}", False),
        ("{{ [1] }}", False),
        ("{{ 1 }} or so", False),
        ("{{ trigger.to_state.state == 'on' }}", True),
        ("{{ is_state('input_boolean.guest_mode', 'on') }}", False),
    ],
)
def test_the_expression_condition_holds_for_true_results(value: str, holds: bool) -> None:
    assert build({"kind": "expression", "value": value}).holds(CTX) is holds


def test_the_expression_condition_outside_a_run_reads_no_trigger() -> None:
    reads_trigger = build({"kind": "expression", "value": "{{ trigger == none }}"})
    assert reads_trigger.evaluate(STATES, NOW) is True
    assert reads_trigger.holds(CTX) is False


def test_an_expression_condition_that_fails_raises() -> None:
    failing = build({"kind": "expression", "value": "{{ states('sensor.text') | int }}"})
    with pytest.raises(ExpressionError, match="cannot convert"):
        failing.holds(CTX)


def test_and_or_not_pass_the_trigger_to_nested_conditions() -> None:
    from_on = {"kind": "expression", "value": "{{ trigger.to_state.state == 'on' }}"}
    guest = {"kind": "state", "entity_id": "input_boolean.guest_mode", "state": "on"}
    assert build({"kind": "and", "conditions": [from_on]}).holds(CTX)
    assert not build({"kind": "and", "conditions": [from_on, guest]}).holds(CTX)
    assert build({"kind": "or", "conditions": [guest, from_on]}).holds(CTX)
    assert not build({"kind": "not", "conditions": [from_on]}).holds(CTX)
    nested = {"kind": "not", "conditions": [{"kind": "or", "conditions": [guest, from_on]}]}
    assert not build(nested).holds(CTX)
    assert build(nested).evaluate(STATES, NOW)  # no trigger: the expression is false


def test_choose_and_if_pass_the_trigger_to_their_conditions() -> None:
    by_trigger = {"kind": "expression", "value": "{{ trigger.id == 'motion' }}"}
    stop = {"kind": "stop", "reason": "matched"}
    choose = build({"kind": "choose", "options": [{"conditions": [by_trigger], "actions": [stop]}]})
    assert [action.config.reason for action in choose.branches()[choose.take(CTX)]] == ["matched"]
    assert choose.branches()[choose.take(Context(states=STATES, now=NOW))] == ()
    branch = build({"kind": "if", "conditions": [by_trigger], "then": [stop]})
    assert [action.config.reason for action in branch.branches()[branch.take(CTX)]] == ["matched"]
