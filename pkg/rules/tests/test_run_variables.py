"""A run's variables: the rule's ``variables``, the ``variables`` action and its scopes (HA
2025.4: a name is updated where it is defined, else defined for the whole run), and
their life across a pause, in the stored record, into a new engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ruby_rules import load_text
from ruby_rules.model import rule_version
from ruby_rules.testing import Bench, by_status, rules_of

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

RULE = """
rules:
  - id: greet
    description: variables everywhere
    variables:
      lamp: light.hall
      level: "{{ states('sensor.level') | int(0) * 10 }}"
      label: "{{ lamp }} at {{ level }}"
    triggers:
      - {kind: state, entity_id: input_boolean.go, to: "on"}
    conditions:
      - {kind: expression, value: "{{ level > 0 }}"}
    actions:
"""


def bench(actions: str, **states: str) -> Bench:
    text = RULE + actions
    b = Bench(rules_of(text), T0)
    for entity, value in states.items():
        b.change(entity.replace("__", "."), value, T0 - timedelta(hours=1))
    return b


def go(b: Bench, minutes: float = 0) -> None:
    b.change("input_boolean.go", "on", T0 + timedelta(minutes=minutes))


CALL = """\
      - kind: call
        service: light.turn_on
        target: {entity_id: "{{ lamp }}"}
        data: {message: "{{ label }}", note: "{{ note | default('none') }}"}
"""


def test_rule_variables_are_rendered_in_order_and_read_by_conditions_and_actions() -> None:
    b = bench(CALL, sensor__level="5")
    go(b)
    [command] = b.history.commands
    assert command.target == {"entity_id": ["light.hall"]}
    assert command.data == {"message": "light.hall at 50", "note": "none"}
    quiet = bench(CALL, sensor__level="0")  # the condition reads `level`
    go(quiet)
    assert quiet.history.commands == []
    assert by_status(quiet.history)["not_run"] == ["condition 0 (expression) false"]


def test_a_variables_action_feeds_every_step_after_it_wherever_it_is_set() -> None:
    actions = """\
      - kind: variables
        variables: {note: first, label: "{{ label }}!"}
      - kind: if
        conditions: [{kind: expression, value: "{{ note == 'first' }}"}]
        then:
          - kind: variables
            variables: {note: second, inner: only here}
      - kind: call
        service: notify.notify
        data: {note: "{{ note }}", label: "{{ label }}", inner: "{{ inner | default('gone') }}"}
"""
    b = bench(actions, sensor__level="2")
    go(b)
    [command] = b.history.commands
    # `note` was defined outside the `if`: updated there; `inner`, new inside it, is defined
    # for the whole run (HA 2025.4's ScriptRunVariables).
    assert command.data == {"note": "second", "label": "light.hall at 20!", "inner": "only here"}


def test_a_variable_set_before_a_delay_is_read_after_it_in_a_new_engine() -> None:
    actions = (
        """\
      - kind: variables
        variables: {note: "{{ states('sensor.level') }} before"}
      - kind: delay
        duration: 10m
"""
        + CALL
    )
    b = bench(actions, sensor__level="3")
    go(b)
    [raw] = b.stored.values()
    stored = json.loads(raw)
    assert stored["variables"] == [
        {"lamp": "light.hall", "level": 30, "label": "light.hall at 30", "note": "3 before"}
    ]
    b.change("sensor.level", "9", T0 + timedelta(minutes=5))  # the value changes meanwhile
    restarted = b.restart()
    restarted.advance(T0 + timedelta(minutes=10))
    [command] = restarted.history.commands
    assert command.data == {"message": "light.hall at 30", "note": "3 before"}
    assert restarted.stored == {}


def test_a_failing_variable_template_fails_the_run_with_its_reason() -> None:
    bad = (RULE + CALL).replace("int(0) * 10", "int * 10")  # no default: 'x' fails
    b2 = Bench(rules_of(bad), T0)
    b2.change("sensor.level", "x", T0 - timedelta(hours=1))
    go(b2)
    assert b2.history.commands == []
    [reason] = by_status(b2.history)["failed"]
    assert reason.startswith("variables: template")
    assert "int" in reason
    assert [event.what for event in b2.history.rule_events] == ["failed"]


def test_a_variable_name_templates_cannot_read_is_refused_where_it_is_written() -> None:
    text = (RULE + CALL).replace("lamp: light.hall", "2lamp: light.hall")
    [error] = load_text(text, "t.yaml").errors
    assert error.line == 6
    assert "variables: invalid variable name '2lamp'" in error.message
    reserved = (RULE + CALL).replace("lamp: light.hall", "repeat: 1")
    [error] = load_text(reserved, "t.yaml").errors
    assert "'repeat' is a variable the engine sets" in error.message


def test_rules_without_variables_keep_their_version() -> None:
    [rule] = rules_of(RULE + CALL)
    plain = rule.config.model_copy(update={"variables": None})
    dumped = plain.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "variables" not in dumped
    assert rule_version(plain) != rule.version  # the variables themselves count
