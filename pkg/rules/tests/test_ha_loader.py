"""Home Assistant's automation syntax: both spellings load into the same native rule, errors
are located in the HA text, and every feature Ruby Core cannot run yet is refused by name."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from ruby_rules import LoadResult, load_dir, load_text
from ruby_rules.ha import features
from ruby_rules.ha.kinds import Kind
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"

NEW = """\
- id: hall
  alias: Hall light
  description: On with motion after dusk.
  mode: restart
  triggers:
    - trigger: state
      entity_id: binary_sensor.hall_motion
      from: "off"
      to: "on"
      for: {minutes: 1}
  conditions:
    - condition: numeric_state
      entity_id: sensor.lux
      below: 50
    - "{{ not is_state('input_boolean.guests', 'on') }}"
  actions:
    - action: light.turn_on
      target: {entity_id: light.hall}
      data: {brightness_pct: 60}
    - delay: "00:05:00"
    - action: light.turn_off
      target: {entity_id: light.hall}
"""

OLD = """\
- id: hall
  alias: Hall light
  description: On with motion after dusk.
  mode: restart
  trigger:
    platform: state
    entity_id: binary_sensor.hall_motion
    from: "off"
    to: "on"
    for: 60
  condition:
    - condition: and
      conditions:
        - condition: numeric_state
          entity_id: sensor.lux
          below: "50"
        - condition: template
          value_template: "{{ not is_state('input_boolean.guests', 'on') }}"
  action:
    - service: light.turn_on
      entity_id: light.hall
      data_template: {brightness_pct: 60}
    - delay: {seconds: 300}
    - service: light.turn_off
      data: {entity_id: light.hall}
"""


def load(text: str, name: str = "automations.yaml") -> LoadResult:
    return load_text(dedent(text), name)


def messages(result: LoadResult) -> list[str]:
    return [str(error) for error in result.errors]


def test_the_new_spelling_loads_into_the_native_model() -> None:
    result = load(NEW)
    assert result.ok, messages(result)
    [rule] = result.rules
    c = rule.config
    assert (c.id, c.description, c.mode) == (
        "hall",
        "Hall light: On with motion after dusk.",
        "restart",
    )
    [trigger] = c.triggers
    assert trigger.model_dump(by_alias=True, exclude_none=True) == {
        "kind": "state",
        "entity_id": ("binary_sensor.hall_motion",),
        "from": ("off",),
        "to": ("on",),
        "for": timedelta(minutes=1),
    }
    assert [condition.kind for condition in c.conditions] == ["numeric_state", "expression"]
    assert [action.kind for action in c.actions] == ["call", "delay", "call"]
    assert (rule.file, rule.line, rule.column) == ("automations.yaml", 1, 3)


def test_the_old_spelling_gives_the_same_rule_but_for_the_and() -> None:
    old = load(OLD)
    assert old.ok, messages(old)
    [rule] = old.rules
    [both] = rule.config.conditions
    assert both.kind == "and"
    new = load(NEW).rules[0].config
    assert rule.config.model_copy(update={"conditions": new.conditions}) == new
    # data_template, entity_id next to the service and entity_id in data: one target, one data
    on, _, off = rule.config.actions
    assert on.model_dump()["target"]["entity_id"] == ("light.hall",)
    assert on.model_dump()["data"] == {"brightness_pct": 60}
    assert off.model_dump()["target"]["entity_id"] == ("light.hall",)
    assert off.model_dump()["data"] == {}


def test_an_automation_without_id_gets_one_from_its_alias_and_messages_say_so() -> None:
    text = """\
    - alias: "Évening lights: ON!"
      triggers: {trigger: time, at: "19:00"}
      actions: {action: light.turn_on, target: {entity_id: light.Living}}
    - triggers: {trigger: time, at: "20:00"}
      actions: {action: light.turn_on, target: {entity_id: light.x}}
    """
    result = load(text)
    assert [rule.id for rule in result.rules] == ["automations_2"]
    assert result.rules[0].config.description == "Home Assistant automation automations_2"
    assert messages(result) == [
        "automations.yaml:3:56: rule 'evening_lights_on' (id derived from its alias): "
        "actions[0].target.entity_id: invalid entity id 'light.Living': expected "
        "'domain.object_id' in lower-case letters, digits and single underscores "
        "(such as 'light.hallway')"
    ]


def test_an_error_in_a_translated_field_points_at_the_ha_text() -> None:
    text = """\
    - id: x
      trigger:
        - platform: numeric_state
          entity_id: sensor.t
          above: 30
          below: 20
        - platform: state
          entity_id: light.a
          to: "on"
          form: "off"
      action:
        - service: light.turn_on
          data_template:
            entity_id: "light.b c"
        - delay: "00:05"
        - wait_for_trigger: {platform: state, entity_id: light.a, to: "off"}
          timeout: {hours: 400000}
    """
    assert messages(load(text)) == [
        "automations.yaml:3:7: rule 'x': triggers[0]: 'above' (30.0) must be less than "
        "'below' (20.0)",
        "automations.yaml:10:7: rule 'x': triggers[1].form: unknown field 'form'",
        "automations.yaml:14:20: rule 'x': actions[0].target.entity_id: invalid entity id "
        "'light.b c': expected 'domain.object_id' in lower-case letters, digits and single "
        "underscores (such as 'light.hallway')",
        "automations.yaml:17:16: rule 'x': actions[2].timeout: duration '400000h' out of "
        "range: at most 366 days (31622400 seconds)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "trigger: {platform: device, device_id: abc, domain: zha, type: press}",
            "2:13: rule 'x': trigger.platform: device trigger",
        ),
        (
            "trigger: {trigger: template, value_template: '{{ now().hour > 7 }}'}",
            "2:32: rule 'x': trigger.value_template: now() in a template trigger",
        ),
        (
            "trigger: {platform: event, event_type: a, context: {user_id: u}}",
            "2:45: rule 'x': trigger.context: 'context' in an event trigger",
        ),
        (
            "condition: {condition: device, device_id: abc, domain: zha, type: is_on}",
            "2:15: rule 'x': condition.condition: device condition",
        ),
        (
            "action: {action: light.turn_on, response_variable: r}",
            "2:35: rule 'x': action.response_variable: 'response_variable' (a call's response)",
        ),
        (
            "action: {event: hello, event_data: '{{ x }}'}",
            "2:26: rule 'x': action.event_data: event data from one template",
        ),
    ],
)
def test_a_feature_not_supported_yet_is_refused_by_name_at_its_place(
    text: str, expected: str
) -> None:
    base = {
        "trigger": "trigger: {platform: state, entity_id: light.a, to: 'on'}",
        "condition": "",
        "action": "action: {service: light.turn_on, entity_id: light.a}",
    }
    key = text.split(":")[0]
    parts = [text] + [line for name, line in base.items() if name != key and line]
    result = load("- id: x\n  " + "\n  ".join(parts) + "\n")
    assert result.rules == ()
    [message] = messages(result)
    assert message.startswith(f"automations.yaml:{expected} is not supported yet"), message


def test_disabled_items_are_left_out_as_ha_does() -> None:
    result = load("""\
    - id: x
      triggers:
        - {trigger: state, entity_id: light.a, to: "on"}
        - {trigger: sun, event: sunset, enabled: false}
      conditions:
        - {condition: sun, after: sunset, enabled: false}
      actions:
        - {action: light.turn_on, target: {entity_id: light.b}}
        - {repeat: {count: 2, sequence: []}, enabled: false}
    """)
    assert result.ok, messages(result)
    c = result.rules[0].config
    assert (len(c.triggers), len(c.conditions), len(c.actions)) == (1, 0, 1)


def test_a_condition_step_ends_the_run_when_it_does_not_hold() -> None:
    result = load("""\
    - id: x
      triggers: {trigger: state, entity_id: light.a, to: "on"}
      actions:
        - condition: state
          entity_id: light.b
          state: "on"
        - action: light.turn_on
          target: {entity_id: light.c}
    """)
    assert result.ok, messages(result)
    step = result.rules[0].config.actions[0].model_dump(by_alias=True, exclude_none=True)
    assert step["kind"] == "if"
    assert step["conditions"][0]["kind"] == "not"
    assert step["conditions"][0]["conditions"][0]["entity_id"] == ("light.b",)
    assert step["then"][0] == {
        "kind": "stop",
        "reason": "the condition at actions[0] did not hold",
        "error": False,
    }


def test_both_spellings_at_once_and_bad_settings_are_errors() -> None:
    result = load("""\
    - id: x
      trigger: {platform: state, entity_id: light.a, to: "on"}
      triggers: {trigger: state, entity_id: light.a, to: "on"}
      max_exceeded: loud
      initial_state: false
      actions:
        - action: light.turn_on
          service: light.turn_off
    """)
    assert messages(result) == [
        "automations.yaml:2:3: rule 'x': trigger: give either 'triggers' or 'trigger' (the "
        "older spelling), not both",
        "automations.yaml:4:17: rule 'x': max_exceeded: expected one of critical, debug, "
        "error, info, notset, silent, warning; got text",
        "automations.yaml:5:3: rule 'x': initial_state: an automation off at start "
        "(initial_state: false) is not supported yet: leave it out",
        "automations.yaml:8:7: rule 'x': actions[0].service: give the service once: "
        "'action', 'service' or 'service_template'",
    ]


def test_a_package_a_single_automation_and_a_pasted_one_are_recognised() -> None:
    package = load("""\
    automation:
      - {id: a, triggers: {trigger: time, at: "07:00"}, actions: {scene: scene.morning}}
    automation evening:
      id: b
      triggers: {trigger: time, at: "19:00"}
      actions: {scene: scene.evening}
    input_boolean:
      guests: {}
    """)
    assert [rule.id for rule in package.rules] == ["a", "b"]
    assert messages(package) == [
        "automations.yaml:7:1: 'input_boolean' is not an automation: only the 'automation' "
        "keys of a package are read"
    ]
    [call] = package.rules[0].config.actions
    assert call.model_dump()["service"] == "scene.turn_on"
    single = load('id: c\ntrigger: {platform: time, at: "07:00"}\naction: {scene: scene.x}\n')
    assert [rule.id for rule in single.rules] == ["c"]
    pasted = load("""\
    rules:
      - id: native
        description: Native.
        triggers: [{kind: time, at: "07:00"}]
        actions: [{kind: call, service: scene.turn_on, target: {entity_id: scene.x}}]
      - alias: Pasted from HA
        triggers: [{trigger: time, at: "08:00"}]
        actions: [{action: scene.turn_on, target: {entity_id: scene.y}}]
    """)
    assert pasted.ok, messages(pasted)
    assert [rule.id for rule in pasted.rules] == ["native", "pasted_from_ha"]


def test_every_ha_duration_form() -> None:
    forms = {
        '"00:05:00"': 300,
        '"00:05"': 300,
        '"1:30:15.5"': 5415.5,
        "90": 90,
        '"90"': 90,
        "{minutes: 1, seconds: 30}": 90,
        "{days: 1}": 86400,
        "{milliseconds: 250}": 0.25,
    }
    for written, seconds in forms.items():
        result = load(f"""\
        - id: x
          triggers: {{trigger: state, entity_id: light.a, to: "on"}}
          actions: [{{delay: {written}}}]
        """)
        assert result.ok, (written, messages(result))
        assert result.rules[0].config.actions[0].model_dump()["duration"] == timedelta(
            seconds=seconds
        ), written
    bad = load(
        '- id: x\n  triggers: {trigger: state, entity_id: l.a, to: "on"}\n'
        '  actions: [{delay: "soon"}]\n'
    )
    assert messages(bad) == [
        "automations.yaml:3:21: rule 'x': actions[0].delay: expected a duration as Home "
        "Assistant writes it: 'HH:MM:SS', a number of seconds, or a mapping such as "
        "{minutes: 5}; got text"
    ]


def test_the_table_names_a_native_kind_that_exists_for_each_supported_feature() -> None:
    registry = default_registry()
    tables: tuple[tuple[Role, dict[str, Kind]], ...] = (
        ("trigger", features.TRIGGERS),
        ("condition", features.CONDITIONS),
        ("action", features.ACTIONS),
    )
    for role, table in tables:
        for name, kind in table.items():
            assert kind.native is None or kind.native in registry.kinds(role), (role, name)


def test_the_examples_folder_is_not_loaded_with_the_rules_directory() -> None:
    # load_dir is not recursive: the HA corpus under rules/examples/ha never runs with make run.
    loaded = load_dir(RULES_DIR)
    assert {rule.file for rule in loaded.rules} <= {"hallway.yaml", "examples.yaml"}
    assert loaded.ok, [str(error) for error in loaded.errors]


def test_a_file_of_thousands_of_refused_automations_gives_a_bounded_refusal() -> None:
    one = "- alias: x\n  triggers: {trigger: device, device_id: a}\n  actions: {repeat: {}}\n"
    result = load(one * (128 * 1024 // len(one)))
    assert result.rules == ()
    assert len(result.errors) == 100
    assert result.errors[-1].message.endswith(
        "more errors from here on, not shown (at most 100 per file)"
    )
    assert result.errors[0].message == (
        "rule 'x' (id derived from its alias): "
        "triggers.trigger: device trigger is not supported yet"
    )


def test_a_single_automation_without_triggers_is_told_what_it_misses() -> None:
    result = load("alias: Lonely\nactions: {scene: scene.x}\n")
    assert messages(result) == [
        "automations.yaml:1:1: rule 'lonely' (id derived from its alias): missing field 'triggers'"
    ]
