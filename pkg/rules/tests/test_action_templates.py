"""Templates where Home Assistant allows them in an action: the service, the target, the whole
data, a delay. Rendered when the step runs, typed as HA types them; a failure fails the run
with the template's error; command ids hash the position, never what was rendered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ruby_rules import load_text
from ruby_rules.testing import Bench, by_status, rules_of

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)

HEAD = """
- id: t
  triggers: {trigger: state, entity_id: input_select.scene, to: ~}
  actions:
"""


def run(actions: str, scene: str = "evening") -> Bench:
    b = Bench(rules_of(HEAD + actions, "automations.yaml"), T0)
    b.change("sensor.minutes", "2", T0 - timedelta(hours=1))
    b.change("input_select.scene", scene, T0)
    return b


SWITCH = """\
    - action: "{{ 'light.turn_on' if trigger.to_state.state == 'evening' else 'light.turn_off' }}"
      target: {entity_id: light.hall}
"""


def test_a_service_from_a_template_is_rendered_when_the_step_runs() -> None:
    b = run(SWITCH)
    [command] = b.history.commands
    assert (command.domain, command.service) == ("light", "turn_on")
    off = run(SWITCH, scene="night")
    [other] = off.history.commands
    assert (other.domain, other.service) == ("light", "turn_off")


def test_the_command_id_hashes_the_position_not_the_rendered_values() -> None:
    actions = """\
    - action: light.turn_on
      target: "{{ {'entity_id': 'light.' ~ trigger.to_state.state} }}"
      data: "{{ {'brightness': states('sensor.minutes') | int * 10} }}"
"""
    first = run(actions)
    [command] = first.history.commands
    assert command.target == {"entity_id": ["light.evening"]}
    assert command.data == {"brightness": 20}
    again = Bench(first.rules, T0)  # the same message, other states: other data, same id
    again.change("sensor.minutes", "7", T0 - timedelta(hours=1))
    again.change("input_select.scene", "evening", T0)
    [same] = again.history.commands
    assert same.data == {"brightness": 70}
    assert same.command_id == command.command_id


def test_a_delay_from_a_template_in_each_of_ha_s_forms() -> None:
    for delay in (
        "\"{{ states('sensor.minutes') | int }}:00\"",  # HH:MM -> 2 hours
        "{hours: \"{{ states('sensor.minutes') | int }}\"}",
        "\"{{ states('sensor.minutes') | int * 3600 }}\"",
    ):
        b = run(f"    - delay: {delay}\n    - action: light.turn_off\n")
        [record] = b.engine.timers.values()
        assert record.deadline == T0 + timedelta(hours=2), delay
        b.advance(T0 + timedelta(hours=2))
        assert [c.service for c in b.history.commands] == ["turn_off"]


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("- action: \"{{ 'not a service' }}\"", "gave 'not a service': invalid service"),
        ('- action: light.turn_on\n      target: "{{ 5 }}"', "target '{{ 5 }}' gave 5"),
        (
            "- action: light.turn_on\n      target: \"{{ {'entity_id': 'Bad id'} }}\"",
            "valid ids in entity_id",
        ),
        ('- action: light.turn_on\n      data: "{{ [1] }}"', "expected a mapping"),
        ("- delay: \"{{ 'soon' }}\"", "gave 'soon': invalid duration 'soon'"),
        ('- action: light.turn_on\n      data: {x: "{{ 1 / 0 }}"}', "division by zero"),
    ],
)
def test_a_template_giving_what_the_step_cannot_use_fails_the_run(action: str, reason: str) -> None:
    b = run(f"    {action}\n")
    assert b.history.commands == []
    [failed] = by_status(b.history)["failed"]
    assert reason in failed
    assert [event.what for event in b.history.rule_events] == ["fired", "failed"]
    [step] = [s for s in b.history.traces[-1].steps if s.kind == "error"]
    assert reason in step.result


def test_a_rendered_value_is_never_rendered_again() -> None:
    # A state holding template text reaches the target as text: refused, never run.
    b = Bench(rules_of(HEAD + "    - action: light.turn_on\n      target: \"{{ {'entity_id': "
                      "trigger.to_state.state} }}\"\n", "automations.yaml"), T0)  # fmt: skip
    b.change("input_select.scene", "{{ 7 * 6 }}", T0)
    assert b.history.commands == []
    assert "gave {'entity_id': '{{ 7 * 6 }}'}" in by_status(b.history)["failed"][0]


def test_templated_fields_load_natively_and_a_template_where_a_mapping_is_needed_is_checked() -> (
    None
):
    native = """
rules:
  - id: n
    description: templated call
    triggers: [{kind: event, event_type: go}]
    actions:
      - kind: call
        service: "{{ trigger.event.data.service }}"
        target: {template: "{{ {'area_id': 'kitchen'} }}"}
        data_template: "{{ trigger.event.data.data }}"
"""
    b = Bench(rules_of(native), T0)
    b.event("go", T0, service="light.turn_on", data={"brightness": 3})
    [command] = b.history.commands
    assert (command.service, command.target, command.data) == (
        "turn_on",
        {"area_id": ["kitchen"]},
        {"brightness": 3},
    )
    for wrong, message in (
        ("target: {template: kitchen}", "expected a mapping, or a template giving one"),
        ('data: {a: 1}\n        data_template: "{{ {} }}"', "either 'data' or 'data_template'"),
        ('target: {template: "{{ 1 }}", entity_id: light.a}', "either 'template' or"),
    ):
        text = native.replace("target: {template: \"{{ {'area_id': 'kitchen'} }}\"}", wrong)
        text = text.replace('data_template: "{{ trigger.event.data.data }}"', "")
        [error] = load_text(text, "n.yaml").errors
        assert message in error.message, error


def test_area_and_device_ids_may_be_templates_giving_one_or_a_list() -> None:
    b = run("""\
    - action: light.turn_off
      target:
        area_id: ["{{ trigger.to_state.state ~ '_room' }}", hall]
        device_id: "{{ ['d1', 'd2'] }}"
""")
    [command] = b.history.commands
    assert command.target == {"area_id": ["evening_room", "hall"], "device_id": ["d1", "d2"]}
    bad = run("    - action: light.turn_off\n      target: {area_id: \"{{ 'two words' }}\"}\n")
    assert "expected an area id such as 'kitchen'" in by_status(bad.history)["failed"][0]
