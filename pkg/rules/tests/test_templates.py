"""Templates in rule values give what Home Assistant's give, compiled at load, typed as HA's.

The table below is Home Assistant templates as people write them, with the result Home
Assistant documents for each (its template docs: states and state objects, ``is_state``,
``state_attr``, ``has_value``, ``expand``, time functions, ``iif``, ``float``/``int`` with
and without defaults, Jinja's ``if`` and ``for``), read back as HA reads a rendered text
(``"21.5"`` a number, ``"True"`` a bool, text that is no literal stays text).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from textwrap import dedent
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import JsonValue

from ruby_rules import load_text
from ruby_rules.context import Context, TriggerData
from ruby_rules.expressions import ExpressionError, shown
from ruby_rules.processors.actions.call import CallAction
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_rules.templates import check_value, compile_value, render
from ruby_schemas.ha_events import EntityState

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 20, 21, 30, 5, tzinfo=PARIS)  # a Friday, 20:30:05 UTC


def state(
    value: str, ago: timedelta = timedelta(minutes=1), **attributes: JsonValue
) -> EntityState:
    changed = NOW - ago
    return EntityState(
        state=value, attributes=attributes, last_changed=changed, last_updated=changed
    )


STATES = {
    "sensor.temperature": state("21.5", unit_of_measurement="°C"),
    "sensor.power": state("3100.5", unit_of_measurement="W"),
    "sensor.text": state("abc"),
    "sensor.unreachable": state("unavailable"),
    "sun.sun": state("below_horizon", elevation=-12.5),
    "light.kitchen": state("on", brightness=128, friendly_name="Kitchen"),
    "light.hallway": state("off"),
    "group.downstairs": state("on", entity_id=["light.kitchen", "light.hallway"]),
    "binary_sensor.door": state("on", ago=timedelta(hours=2)),
    "input_boolean.guest_mode": state("off"),
}
STATE_TRIGGER = TriggerData(
    kind="state",
    id="motion",
    event_id="msg-1",
    time=NOW,
    entity_id="light.kitchen",
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

# fmt: off
HOME_ASSISTANT = [
    # states, state objects, attributes
    ("{{ states('sensor.temperature') }}", 21.5),
    ("{{ states('sensor.temperature') | float(0) > 20 }}", True),
    ("{{ states('sensor.text') | float(0) }}", 0),
    ("{{ states('sensor.missing') }}", "unknown"),
    ("{{ states('sensor.temperature', with_unit=True) }}", "21.5 °C"),
    ("{{ states.sensor.temperature.state }}", 21.5),
    ("{{ states['sensor.temperature'].state }}", 21.5),
    ("{{ states.sensor.missing.state }}", ""),
    ("{{ states.light.kitchen.attributes.brightness }}", 128),
    ("{{ states.light.kitchen.name }}", "Kitchen"),
    ("{{ states.light.hallway.name }}", "hallway"),
    ("{{ states.light.kitchen.domain }}/{{ states.light.kitchen.object_id }}", "light/kitchen"),
    ("{{ states.light | count }}", 2),
    ("{{ states.light | selectattr('state', 'eq', 'on') | map(attribute='entity_id') | list }}",
     ["light.kitchen"]),
    ("{{ is_state('sun.sun', 'below_horizon') }}", True),
    ("{{ is_state('light.kitchen', ['off', 'on']) }}", True),
    ("{{ is_state('light.missing', 'on') }}", False),
    ("{{ state_attr('light.kitchen', 'brightness') }}", 128),
    ("{{ state_attr('light.kitchen', 'missing') }}", None),
    ("{{ state_attr('sun.sun', 'elevation') < 0 }}", True),
    ("{{ is_state_attr('light.kitchen', 'brightness', 128) }}", True),
    ("{{ has_value('sensor.temperature') }}", True),
    ("{{ has_value('sensor.unreachable') }}", False),
    ("{{ has_value('sensor.missing') }}", False),
    ("{{ 'light.kitchen' | is_state('on') }}", True),
    ("{{ 'sensor.temperature' is has_value }}", True),
    ("{{ expand('group.downstairs') | map(attribute='entity_id') | list }}",
     ["light.hallway", "light.kitchen"]),
    ("{{ expand('group.downstairs', 'light.kitchen') | count }}", 2),
    ("{{ expand('group.downstairs') | selectattr('state', 'eq', 'on') | map(attribute='name')"
     " | join(', ') }}", "Kitchen"),
    # the trigger
    ("{{ trigger.to_state.state }}", "on"),
    ("{{ trigger.from_state.state }}", "off"),
    ("{{ trigger.entity_id }}", "light.kitchen"),
    ("{{ trigger.platform }}", "state"),
    ("{{ trigger.id }}", "motion"),
    ("{{ trigger.to_state.attributes.brightness | int(0) + 25 }}", 153),
    ("{{ trigger.to_state.state != trigger.from_state.state }}", True),
    ("{{ trigger.to_state }}",
     "<state light.kitchen=on; brightness=128 @ 2026-11-20T21:29:05+01:00>"),
    # time: now() is the run's time
    ("{{ now() }}", "2026-11-20 21:30:05+01:00"),
    ("{{ now().hour }}", 21),
    ("{{ now().weekday() }}", 4),
    ("{{ now().strftime('%H:%M') }}", "21:30"),
    ("{{ utcnow().hour }}", 20),
    ("{{ today_at('07:00') }}", "2026-11-20 07:00:00+01:00"),
    ("{{ now() > today_at('19:30') }}", True),
    ("{{ as_timestamp('2026-01-01T00:00:00+00:00') }}", 1767225600.0),
    ("{{ as_timestamp('not a date', 0) }}", 0),
    ("{{ as_datetime('2026-01-01T10:00:00+00:00').year }}", 2026),
    ("{{ as_datetime(0) }}", "1970-01-01 00:00:00+00:00"),
    ("{{ as_datetime('not a date') }}", None),
    ("{{ as_local(as_datetime('2026-01-01T10:00:00+00:00')).hour }}", 11),
    ("{{ relative_time(states.binary_sensor.door.last_changed) }}", "2 hours"),
    ("{{ (now() - states.binary_sensor.door.last_changed).total_seconds() > 3600 }}", True),
    ("{{ now() - timedelta(hours=1) > states.binary_sensor.door.last_changed }}", True),
    ("{{ timedelta(minutes=90) }}", "1:30:00"),
    ("{{ as_timestamp(now()) - as_timestamp(states.binary_sensor.door.last_changed) }}", 7200.0),
    # conversions, defaults, iif
    ("{{ '12.7' | int }}", 12),
    ("{{ '12.7' | float }}", 12.7),
    ("{{ int('abc', 5) }}", 5),
    ("{{ float('abc', -1) }}", -1),
    ("{{ 'on' | bool }}", True),
    ("{{ is_number('3.5') }}", True),
    ("{{ is_number('abc') }}", False),
    ("{{ iif(is_state('light.kitchen', 'on'), 'bright', 'dark') }}", "bright"),
    ("{{ iif(none, 'yes', 'no', 'nothing') }}", "nothing"),
    ("{{ iif(0) }}", False),
    ("{{ 2.5 | round }}", 2),
    ("{{ 3.14159 | round(2) }}", 3.14),
    ("{{ 2.1 | round(0, 'ceil') }}", 3),
    ("{{ (states('sensor.temperature') | float * 1.8 + 32) | round(1) }}", 70.7),
    ("{{ states('sensor.temperature') | float + 1 }}", 22.5),
    ("{{ min(3, 1, 2) }}", 1),
    ("{{ [3, 4] | max }}", 4),
    ("{{ average(1, 2, 3) }}", 2.0),
    ("{{ '%.1f' | format(3.14159) }}", 3.1),
    ("{{ 'Hello' | upper }}", "HELLO"),
    ("{{ 'Hello'.lower() }}", "hello"),
    ("{{ {'a': 1} | to_json }}", {"a": 1}),  # JSON text reads back as a mapping, as in HA
    ("{{ ['a'] | to_json }} is JSON", '["a"] is JSON'),
    ("{{ {'a': '<b>'} | tojson }} is HTML-safe", '{"a": "\\u003cb\\u003e"} is HTML-safe'),
    ("{{ ('{\"a\": [1, 2]}' | from_json).a[1] }}", 2),
    # arithmetic, statistics, encodings
    ("{{ log(100, 10) }}", 2.0),
    ("{{ 16 | sqrt }}", 4.0),
    ("{{ pi | round(2) }}", 3.14),
    ("{{ sin(0) }}", 0.0),
    ("{{ [1, 3, 2] | median }}", 2),
    ("{{ 5 | bitwise_and(3) }}", 1),
    ("{{ 22 | ordinal }}", "22nd"),
    ("{{ 'abc' | base64_encode }}", "YWJj"),
    ("{{ strptime('2026-01-02', '%Y-%m-%d').day }}", 2),
    ("{{ set([1, 1, 2]) | list }}", [1, 2]),
    ("{{ zip([1, 2], ['a', 'b']) | list }}", [[1, "a"], [2, "b"]]),
    ("{{ [1, 2] is list }}", True),
    # regular expressions
    ("{{ 'Hello World' | regex_match('hello', ignorecase=True) }}", True),
    ("{{ states('sensor.text') | regex_search('b') }}", True),
    ("{{ 'abc123' | regex_replace('[0-9]+', '#') }}", "abc#"),
    ("{{ 'ab' | regex_replace('(a)', '<\\\\1>') }}", "<a>b"),  # a group, as in HA
    ("{{ 'a1b22' | regex_findall('[0-9]+') }}", ["1", "22"]),
    ("{{ 'a1b22' | regex_findall_index('[0-9]+', 1) }}", 22),
    ("{{ trigger.entity_id is match('light[.]') }}", True),
    ("{{ states.light | map(attribute='entity_id') | select('search', 'kit') | list }}",
     ["light.kitchen"]),
    # statements
    ("{% for i in range(9) %}{% if i == 3 %}{% break %}{% endif %}{{ i + 1 }}{% endfor %}", 123),
    ("{% if is_state('light.kitchen', 'on') %}on{% else %}off{% endif %}", "on"),
    ("{% if states('sensor.temperature') | float(0) > 25 %}hot{% elif states('sensor.temperature')"
     " | float(0) > 20 %}warm{% else %}cold{% endif %}", "warm"),
    ("{% for s in states.light %}{{ s.name }}{% if not loop.last %}, {% endif %}{% endfor %}",
     "hallway, Kitchen"),
    ("{% set ns = namespace(total=0) %}{% for s in expand('group.downstairs') %}"
     "{% set ns.total = ns.total + (s.attributes.brightness | default(0)) %}{% endfor %}"
     "{{ ns.total }}", 128),
    ("{% set t = states('sensor.temperature') | float %}{{ t * 2 }}", 43.0),
    ("{% macro label(e) %}{{ e.name }}={{ e.state }}{% endmacro %}"
     "{{ label(states.light.kitchen) }}", "Kitchen=on"),
    ("{# a comment #}{{ 1 }}", 1),
    # typed results, as Home Assistant reads the text
    ("{{ '21.50' }}", 21.5),
    ("{{ '007' }}", "007"),
    ("{{ '1e3' }}", "1e3"),
    ("{{ 'True' }}", True),
    ("{{ none }}", None),
    ("{{ '' }}", ""),
    ("{{ [1, 'a', none] }}", [1, "a", None]),
    ("{{ (1, 2) }}", [1, 2]),
    ("{{ {'a': [1, {'b': true}]} }}", {"a": [1, {"b": True}]}),
    ("{{ 1 }}{{ 2 }}", 12),
    ("  {{ 1 + 1 }}\n", 2),
    ("power {{ states('sensor.power') }} W", "power 3100.5 W"),
    ("[{{ none }}] {{ true }}", "[None] True"),
    ("rgb={{ [255, 200, 0] }}", "rgb=[255, 200, 0]"),
    ("{{ 'a' ~ 1 ~ none }}", "a1None"),
]
# fmt: on


@pytest.mark.parametrize(("template", "expected"), HOME_ASSISTANT)
def test_templates_copied_from_home_assistant_give_its_results(
    template: str, expected: JsonValue
) -> None:
    result = render(template, CTX)
    assert result == expected
    assert type(result) is type(expected)


def test_the_trigger_of_an_event() -> None:
    ctx = Context(states=STATES, now=NOW, trigger=EVENT_TRIGGER)
    assert render("{{ trigger.event.event_type }}", ctx) == "zha_event"
    assert render("{{ trigger.event.data.command }}", ctx) == "double"
    assert render("{{ trigger.event.data['device'].name }}", ctx) == "button"
    assert render("{{ trigger.event.data.args[-1] }}", ctx) == 2
    assert render("{{ trigger.event.data }}", ctx) == EVENT_TRIGGER.event_data  # a mapping
    assert render("{{ trigger.to_state }}", ctx) is None
    assert render("{{ trigger.platform }}", ctx) == "event"


def test_without_a_trigger_it_is_none() -> None:
    ctx = Context(states=STATES, now=NOW)
    assert render("{{ trigger }}", ctx) is None
    assert render("by {{ trigger.entity_id }}", ctx) == "by"


def test_values_are_rendered_recursively_but_keys_never() -> None:
    value: JsonValue = {"{{ 1 }}": ["{{ 1 + 1 }}", {"n": "{{ 'x' | upper }}"}, 3], "plain": [1]}
    rendered = render(value, CTX)
    assert rendered == {"{{ 1 }}": [2, {"n": "X"}, 3], "plain": [1]}
    assert isinstance(rendered, dict)
    assert rendered["plain"] is not value["plain"]  # type: ignore[call-overload, index]


def test_static_values_are_returned_unchanged() -> None:
    value: JsonValue = {"brightness_pct": 60, "name": "a } and { b", "code": "0123", "n": "12"}
    template = compile_value(value)
    assert template.is_static
    assert template.render(CTX) is value  # unlike Home Assistant, "12" without {{ }} stays text
    assert not compile_value(["a", "{% if true %}x{% endif %}"]).is_static
    assert not compile_value("{# just a comment #}").is_static
    assert check_value(value) is value


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 'abc' | float }}", "float got invalid input 'abc' and no default was given"),
        ("{{ int('abc') }}", "int got invalid input 'abc'"),
        ("{{ states('sensor.text') | round }}", "round got invalid input 'abc'"),
        ("{{ as_timestamp('never') }}", "as_timestamp got invalid input 'never'"),
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ 1 < 'a' }}", "not supported between instances"),
        ("{{ today_at('25:99') }}", "could not convert str to datetime: '25:99'"),
        ("{{ states('sensor.power', rounded=True) }}", "not supported yet: it needs the entity"),
        ("{{ states.sensor.missing.state | int }}", "'None' has no attribute 'state'"),
        ("{{ now().now() }}", "access to attribute 'now' of 'datetime' object is unsafe"),
        ("{{ 'a'.encode() }}", "access to attribute 'encode' of 'str' object is unsafe"),
        ("{{ missing_name | is_defined }}", "'missing_name' is undefined"),
        ("{{ log('abc') }}", "log got invalid input 'abc'"),
    ],
)
def test_a_failing_template_fails_with_a_message_quoting_it(template: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        render(template, CTX)
    assert str(caught.value).startswith(f"template {shown(template)} failed: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 1 + }}", "line 1: unexpected 'end of print statement'"),
        ("{% if true %}\nyes\n{{ 1 + }}\n{% endif %}", "line 3: unexpected 'end of print"),
        ("{% if true %}x", "line 1: Unexpected end of template"),
        ("{{ 1 | nope }}", "No filter named 'nope'"),
        ("{{ 1 is nope }}", "No test named 'nope'"),
        ("{{ foo('x') }}", "unknown function 'foo'"),
        ("{{ area_entities('kitchen') }}", "'area_entities' is not supported yet: it needs Home "
         "Assistant's registries"),
        ("{{ device_id('light.kitchen') }}", "'device_id' is not supported yet"),
        ("{{ 'light.x' | area_name }}", "'area_name' is not supported yet"),
        ("{{ 'a' | regex_match('(a+') }}", "invalid regular expression '(a+': missing )"),
        ("{{ 'a' is match('(a{1000}){1000}') }}", "repetitions of a regular expression multiply"),
        ("{{ [1, 2] | random }}", "'random' is not supported yet"),
        ("{{ distance('zone.home') }}", "'distance' is not supported yet"),
        ("{% include 'other.j2' %}", "cannot load other templates"),
        ("{% for x in [1] recursive %}{{ loop(x) }}{% endfor %}", "recursive loops"),
        ("{{ ''.__class__ }}", "names starting with '_' are not allowed ('__class__')"),
    ],
)  # fmt: skip
def test_what_cannot_work_is_refused_when_compiling(template: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_value(template)
    assert str(caught.value).startswith(f"invalid template {shown(template)}: ")
    assert message in str(caught.value)


# --- in rules -------------------------------------------------------------------------------


def load(text: str) -> Any:
    return load_text(dedent(text), "r.yaml")


RULE = """\
rules:
  - id: x
    description: Templates in a rule.
    triggers: [{kind: state, entity_id: light.kitchen}]
    actions:
      - kind: call
        service: light.turn_on
        target: {entity_id: "{{ trigger.entity_id }}"}
        data:
          brightness: "{{ (trigger.to_state.attributes.brightness | int) + 10 }}"
          name: "the {{ trigger.entity_id }}"
"""


def test_a_bad_template_in_call_data_is_a_located_load_error() -> None:
    result = load(RULE.replace("| int) + 10", "| int) +"))
    assert result.rules == ()
    [error] = result.errors
    assert str(error).startswith(
        "r.yaml:10:23: rule 'x': actions[0].data.brightness: invalid template "
        "'{{ (trigger.to_state.attributes.brightness | int) + }}': line 1: unexpected "
        "'end of print statement'"
    )


def test_an_unsupported_function_in_a_condition_is_a_located_load_error() -> None:
    text = RULE.replace(
        "    actions:\n",
        "    conditions:\n"
        "      - kind: expression\n"
        "        value: >-\n"
        "          {{ states('sensor.power') | float(0) > 10\n"
        "             and area_name('light.kitchen') == 'Kitchen' }}\n"
        "    actions:\n",
    )
    [error] = load(text).errors
    assert str(error).startswith("r.yaml:7:16: rule 'x': conditions[0].value: invalid template")
    assert "line 2: 'area_name' is not supported yet" in str(error)


def test_bad_templates_in_targets_publish_data_and_conditions_are_located() -> None:
    text = RULE.replace('trigger.entity_id }}"}', 'trigger.entity }} x"}').replace(
        "    actions:\n",
        "    conditions:\n      - {kind: expression, value: always}\n    actions:\n"
        "      - {kind: publish, event_type: e, data: {n: [1, '{{ foo() }}']}}\n",
    )
    messages = [str(error) for error in load(text).errors]
    assert messages[0] == (
        "r.yaml:6:35: rule 'x': conditions[0].value: 'always' holds no template: expected "
        "one such as \"{{ states('sensor.power') | float > 3000 }}\""
    )
    assert messages[1].startswith(
        "r.yaml:8:50: rule 'x': actions[0].data.n: invalid template '{{ foo() }}': line 1: "
        "unknown function 'foo'"
    )
    assert len(messages) == 2  # '{{ trigger.entity }} x' compiles: checked when rendered


def build(config: dict[str, Any]) -> Any:
    """The processor of a condition or action config, found by its kind."""
    registry = default_registry()
    role: Role = "condition" if config["kind"] in registry.kinds("condition") else "action"
    return registry.build(registry.config(role, config["kind"]).model_validate(config))


def test_call_renders_its_target_and_data() -> None:
    [rule] = load(RULE).rules
    target, data = CallAction(rule.config.actions[0]).render_call(CTX)
    assert target == {"entity_id": ["light.kitchen"]}
    assert data == {"brightness": 138, "name": "the light.kitchen"}


def test_call_targets_may_render_lists_and_refuse_non_entity_ids() -> None:
    target = {"entity_id": ["light.a", "{{ expand('group.downstairs') | map(attribute="
              "'entity_id') | list }}"], "area_id": "kitchen"}  # fmt: skip
    call = build({"kind": "call", "service": "light.turn_on", "target": target})
    assert call.render_call(CTX) == (
        {"entity_id": ["light.a", "light.hallway", "light.kitchen"], "area_id": ["kitchen"]},
        {},
    )
    statement = {"entity_id": "{% if is_state('light.kitchen', 'on') %}light.a{% endif %}"}
    call = build({"kind": "call", "service": "light.turn_on", "target": statement})
    assert call.render_call(CTX) == ({"entity_id": ["light.a"]}, {})
    for bad in ("{{ trigger.to_state.state }}", "{{ [] }}", "{{ none }}", "{{ [1] }}"):
        call = build({"kind": "call", "service": "light.turn_on", "target": {"entity_id": bad}})
        with pytest.raises(ExpressionError, match="expected an entity id such as"):
            call.render_call(CTX)


def test_publish_renders_its_data() -> None:
    data = {"watts": "{{ states('sensor.power') | float }}", "unit": "W"}
    publish = build({"kind": "publish", "event_type": "e", "data": data})
    assert publish.render_data(CTX) == {"watts": 3100.5, "unit": "W"}


# --- the expression condition: Home Assistant's template condition ---------------------------


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        ("{{ true }}", True),
        ("{{ 'TRUE' }}", True),
        ("  {{ true }}\n", True),
        ("{% if is_state('light.kitchen', 'on') %}true{% endif %}", True),
        ("{{ false }}", False),
        ("{{ 1 }}", False),  # HA compares the text with 'true': 1, 'on' and 'yes' do not hold
        ("{{ 'on' }}", False),
        ("{{ 'yes' }}", False),
        ("{{ none }}", False),
        ("{{ [1] }}", False),
        ("{{ true }} or so", False),
        ("{{ trigger.to_state.state == 'on' }}", True),
        ("{{ is_state('input_boolean.guest_mode', 'on') }}", False),
    ],
)
def test_the_expression_condition_holds_when_the_text_is_true(value: str, holds: bool) -> None:
    assert build({"kind": "expression", "value": value}).holds(CTX) is holds


def test_the_expression_condition_outside_a_run_reads_no_trigger() -> None:
    reads_trigger = build({"kind": "expression", "value": "{{ trigger is none }}"})
    assert reads_trigger.evaluate(STATES, NOW) is True
    assert reads_trigger.holds(CTX) is False


def test_an_expression_condition_that_fails_raises() -> None:
    failing = build({"kind": "expression", "value": "{{ states('sensor.text') | int }}"})
    with pytest.raises(ExpressionError, match="int got invalid input 'abc'"):
        failing.holds(CTX)


def test_and_or_not_pass_the_trigger_to_nested_conditions() -> None:
    from_on = {"kind": "expression", "value": "{{ trigger.to_state.state == 'on' }}"}
    guest = {"kind": "state", "entity_id": "input_boolean.guest_mode", "state": "on"}
    assert build({"kind": "and", "conditions": [from_on]}).holds(CTX)
    assert not build({"kind": "and", "conditions": [from_on, guest]}).holds(CTX)
    assert build({"kind": "or", "conditions": [guest, from_on]}).holds(CTX)
    assert not build({"kind": "not", "conditions": [from_on]}).holds(CTX)


def test_choose_and_if_pass_the_trigger_to_their_conditions() -> None:
    by_trigger = {"kind": "expression", "value": "{{ trigger.id == 'motion' }}"}
    stop = {"kind": "stop", "reason": "matched"}
    choose = build({"kind": "choose", "options": [{"conditions": [by_trigger], "actions": [stop]}]})
    assert [action.config.reason for action in choose.branches()[choose.take(CTX)]] == ["matched"]
    assert choose.branches()[choose.take(Context(states=STATES, now=NOW))] == ()
