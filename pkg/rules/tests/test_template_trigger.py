"""The ``template`` trigger: fires when its template turns true, as Home Assistant's does;
indexed by the entities it names; its ``for`` is one durable hold; failures are traced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.jinja.reads import reads
from ruby_rules.model import Rule
from ruby_rules.processors.truth import as_boolean
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
RULE = """
rules:
  - id: hot
    description: the fan when it is hot and the window is shut
    triggers:
      - kind: template
        value_template: >-
          {{ states('sensor.t') | float(0) > 25 and is_state('binary_sensor.window', 'off') }}
        HOLD
    actions:
      - kind: call
        service: fan.turn_on
        target: {entity_id: fan.f}
        data:
          why: >-
            {{ trigger.platform }} {{ trigger.entity_id }} {{ trigger.from_state.state }}
            {{ trigger.to_state.state }}
"""


def st(state: str, at: datetime = T0, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=at, last_updated=at)


def load(text: str) -> tuple[Rule, ...]:
    result = load_text(text, "t.yaml")
    assert result.ok, result.errors
    return result.rules


def engine(hold: str = "", **states: str) -> RuleEngine:
    e = RuleEngine(tz=UTC)
    e.set_states({k.replace("__", "."): st(v, T0 - timedelta(hours=1)) for k, v in states.items()})
    e.set_rules(load(RULE.replace("HOLD", hold)), T0)
    return e


def change(e: RuleEngine, entity: str, new: str, minutes: float) -> Effects:
    at = T0 + timedelta(minutes=minutes)
    return e.on_state_changed(
        event_id=f"{entity}@{minutes}", entity_id=entity, old=e.states.get(entity),
        new=st(new, at), now=at,
    )  # fmt: skip


def calls(fx: Effects) -> list[str]:
    return [str(c.data["why"]) for c in fx.commands]


def test_what_a_template_reads_is_told_from_its_syntax() -> None:
    named = reads(
        "{{ states('Sensor.A') }}{{ is_state('b.b', 'on') }}{{ state_attr('c.c', 'x') }}"
        "{{ states.d.d.state }}{{ states['e.e'] }}{{ 'f.f' | states }}{{ 'g.g' is has_value }}"
        "{{ expand('h.h', ['i.i']) | list }}{{ is_state_attr('j.j', 'k', 1) }}"
    )
    assert named.entities == ("b.b", "c.c", "d.d", "e.e", "f.f", "g.g", "h.h", "i.i", "j.j",
                              "sensor.a")  # fmt: skip
    for unknowable in (
        "{{ states(trigger.entity_id) }}",
        "{{ states | selectattr('state', 'eq', 'on') | list | count }}",
        "{{ states.light | list | count }}",
        "{{ expand('group.downstairs') | list | count }}",
        "{% set e = 'a.b' %}{{ states(e) }}",
    ):
        assert reads(unknowable).entities is None, unknowable
    assert reads("{{ now().hour > 7 and is_state('a.b', 'on') }}").clock == ("now",)
    assert reads("{{ trigger.entity_id }}").trigger


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (2.5, True),
        (0.0, False),
        ("on", True),
        ("Yes", True),
        ("enable", True),
        ("true", True),
        ("off", False),
        ("5", False),
        ("", False),
        (None, False),
        ([1], False),
    ],
)
def test_the_result_is_read_as_home_assistants_result_as_boolean(
    value: Any, expected: bool
) -> None:
    assert as_boolean(value) is expected


def test_it_fires_when_the_result_turns_true_and_again_only_after_false() -> None:
    e = engine(sensor__t="20", binary_sensor__window="off")
    assert calls(change(e, "sensor.t", "26", 1)) == ["template sensor.t 20 26"]
    assert calls(change(e, "sensor.t", "27", 2)) == []  # still true: no new edge
    assert calls(change(e, "binary_sensor.window", "on", 3)) == []  # false: re-armed
    assert calls(change(e, "binary_sensor.window", "off", 4)) == [
        "template binary_sensor.window on off"
    ]
    assert not change(e, "sensor.other", "99", 5)  # not named: never offered


def test_true_before_the_change_does_not_fire_even_if_the_engine_just_started() -> None:
    e = engine(sensor__t="30", binary_sensor__window="off")  # true already
    assert calls(change(e, "sensor.t", "31", 1)) == []
    assert calls(change(e, "sensor.t", "20", 2)) == []
    assert calls(change(e, "sensor.t", "26", 3)) == ["template sensor.t 20 26"]


def test_a_template_over_every_entity_is_offered_every_change() -> None:
    text = RULE.replace(
        "{{ states('sensor.t') | float(0) > 25 and is_state('binary_sensor.window', 'off') }}",
        "{{ states.light | selectattr('state', 'eq', 'on') | list | count >= 2 }}",
    )
    e = RuleEngine(tz=UTC)
    e.set_states({"light.a": st("on"), "light.b": st("off")})
    e.set_rules(load(text.replace("HOLD", "")), T0)
    assert calls(change(e, "light.b", "on", 1)) == ["template light.b off on"]
    assert calls(change(e, "light.c", "on", 2)) == []


def test_a_failing_render_fires_nothing_and_is_traced() -> None:
    text = RULE.replace("float(0)", "float")
    e = RuleEngine(tz=UTC)
    e.set_states({"sensor.t": st("20"), "binary_sensor.window": st("off")})
    e.set_rules(load(text.replace("HOLD", "")), T0)
    failed = change(e, "sensor.t", "unavailable", 1)
    assert failed.commands == []
    [trace] = failed.traces
    assert trace.status == "failed"
    assert "trigger 0: template" in trace.reason
    assert "float got invalid input 'unavailable'" in trace.reason
    # HA's rule for a template that failed: not armed, so the next true render does not fire.
    assert calls(change(e, "sensor.t", "30", 2)) == []
    assert calls(change(e, "sensor.t", "20", 3)) == []
    assert calls(change(e, "sensor.t", "30", 4)) == ["template sensor.t 20 30"]


def test_for_is_one_hold_for_the_whole_template_restarted_by_each_new_edge() -> None:
    e = engine("for: 5m", sensor__t="20", binary_sensor__window="off")
    armed = change(e, "sensor.t", "26", 0)
    assert list(armed.timers) == ["for.hot.0.template"]
    assert [t.status for t in armed.traces] == ["armed"]
    assert change(e, "sensor.t", "28", 1).timers == {}  # still true: the hold goes on
    # Another entity makes it false: disarmed, although it did not arm it.
    disarmed = change(e, "binary_sensor.window", "on", 2)
    assert disarmed.timers == {"for.hot.0.template": None}
    rearmed = change(e, "binary_sensor.window", "off", 3)
    assert [r.deadline for r in rearmed.timers.values() if r] == [T0 + timedelta(minutes=8)]
    assert e.due(T0 + timedelta(minutes=7)) == []
    fired = Effects()
    for key in e.due(T0 + timedelta(minutes=8)):
        fired.extend(e.fire(key, T0 + timedelta(minutes=8), projection={}))
    assert calls(fired) == ["template binary_sensor.window on off"]


def test_a_held_template_survives_a_restart_and_fires_once() -> None:
    first = engine("for: 5m", sensor__t="20", binary_sensor__window="off")
    change(first, "sensor.t", "26", 0)
    stored = [read_record(r.to_json()) for r in first.timers.values()]
    second = engine("for: 5m", sensor__t="26", binary_sensor__window="off")
    second.restore(stored)
    due = T0 + timedelta(minutes=5)
    fired = [second.fire(key, due) for key in second.due(due)]
    assert [calls(fx) for fx in fired] == [["template sensor.t 20 26"]]
    original = engine("for: 5m", sensor__t="20", binary_sensor__window="off")
    change(original, "sensor.t", "26", 0)
    again = [original.fire(key, due) for key in original.due(due)]
    assert [c.command_id for c in again[0].commands] == [c.command_id for c in fired[0].commands]
    assert second.due(due + timedelta(hours=1)) == []


def test_the_hold_is_re_checked_when_due() -> None:
    e = engine("for: 5m", sensor__t="20", binary_sensor__window="off")
    change(e, "sensor.t", "26", 0)
    e.set_states({**e.states, "sensor.t": st("10")})  # the view changed without an event
    [key] = e.due(T0 + timedelta(minutes=5))
    fx = e.fire(key, T0 + timedelta(minutes=5))
    assert fx.commands == []
    assert fx.traces[0].status == "not_run"


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ now().hour > 7 and is_state('a.b', 'on') }}", "now() in a template trigger is not"),
        ("{{ true }}", "reads no entity"),
        ("no template", "holds no template"),
        ("{{ states('a.b') > }}", "invalid template"),
    ],
)
def test_what_cannot_work_is_refused_when_the_file_loads(template: str, error: str) -> None:
    text = RULE.replace("HOLD", "")
    text = text.replace(
        ">-\n          {{ states('sensor.t') | float(0) > 25 and is_state('binary_sensor.window',"
        " 'off') }}",
        f'"{template}"',
    )
    result = load_text(text, "t.yaml")
    assert not result.ok
    assert any(error in str(e) and "value_template" in str(e) for e in result.errors), result.errors


def test_a_failing_render_while_held_keeps_the_hold_as_home_assistant_ignores_it() -> None:
    text = RULE.replace("float(0)", "float").replace("HOLD", "for: 5m")
    e = RuleEngine(tz=UTC)
    e.set_states({"sensor.t": st("20"), "binary_sensor.window": st("off")})
    e.set_rules(load(text), T0)
    change(e, "sensor.t", "26", 0)
    failed = change(e, "sensor.t", "unavailable", 1)
    assert [t.status for t in failed.traces] == ["failed"]
    assert failed.timers == {}  # not disarmed
    [key] = e.due(T0 + timedelta(minutes=5))
    assert calls(e.fire(key, T0 + timedelta(minutes=5))) == ["template sensor.t 20 26"]


def test_wait_for_a_template_trigger_resumes_on_its_edge_and_a_failure_waits_on() -> None:
    text = """
rules:
  - id: door
    description: the porch light until the doors are shut (or 10 minutes)
    triggers:
      - {kind: state, entity_id: binary_sensor.bell, to: "on"}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.porch}}
      - kind: wait_for
        trigger:
          kind: template
          value_template: "{{ states('sensor.doors_open') | int == 0 }}"
        timeout: 10m
      - {kind: call, service: light.turn_off, target: {entity_id: light.porch}}
"""
    e = RuleEngine(tz=UTC)
    e.set_states({"sensor.doors_open": st("2"), "binary_sensor.bell": st("off")})
    e.set_rules(load(text), T0)
    assert [c.service for c in change(e, "binary_sensor.bell", "on", 0).commands] == ["turn_on"]
    assert change(e, "sensor.doors_open", "oops", 1).commands == []  # fails: waits on
    assert change(e, "sensor.doors_open", "1", 2).commands == []
    assert [c.service for c in change(e, "sensor.doors_open", "0", 3).commands] == ["turn_off"]
    assert e.timers == {}
