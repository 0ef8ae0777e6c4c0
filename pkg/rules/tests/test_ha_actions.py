"""Home Assistant's ``repeat``, ``sequence``, ``parallel``, ``variables``, ``trigger_variables``,
``continue_on_error`` and templated calls and delays, translated to the native kinds: what they
become, errors at the HA line, and a native form that loads back to the same versions."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from ruby_rules import LoadResult, load_file, load_text
from ruby_rules.ha.native import native_yaml

CORPUS = Path(__file__).resolve().parents[3] / "rules" / "examples" / "ha"


def load(text: str) -> LoadResult:
    return load_text(dedent(text), "automations.yaml")


def native(text: str) -> dict[str, Any]:
    result = load(text)
    assert result.ok, [str(error) for error in result.errors]
    [rule] = result.rules
    dumped: dict[str, Any] = rule.config.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def test_repeat_sequence_parallel_and_variables_become_their_native_kinds() -> None:
    rule = native("""\
    - id: x
      trigger_variables: {room: hall, level: 1}
      variables: {level: 2}
      triggers: {trigger: event, event_type: go}
      actions:
        - variables: {n: "{{ level }}"}
        - repeat:
            while: "{{ repeat.index < 3 }}"
            sequence:
              action: notify.notify
              continue_on_error: true
        - parallel:
            - sequence: [{action: notify.a}, {action: notify.b, enabled: false}]
            - action: notify.c
    """)
    assert rule["variables"] == {"room": "hall", "level": 2}  # trigger_variables first
    variables, repeat, parallel = rule["actions"]
    assert variables == {"kind": "variables", "variables": {"n": "{{ level }}"}}
    assert repeat["while"] == [{"kind": "expression", "value": "{{ repeat.index < 3 }}"}]
    assert [a["service"] for a in repeat["actions"]] == ["notify.notify"]
    assert [branch["kind"] for branch in parallel["actions"]] == ["sequence", "call"]
    assert len(parallel["actions"][0]["actions"]) == 1  # the disabled one is left out


def test_templated_calls_and_delays_become_templates_rendered_when_the_step_runs() -> None:
    rule = native("""\
    - id: x
      triggers: {trigger: event, event_type: go}
      actions:
        - action: "light.turn_{{ trigger.event.data.how }}"
          target: "{{ {'entity_id': trigger.event.data.lamp} }}"
          data: "{{ trigger.event.data.data }}"
        - delay: {minutes: "{{ 2 }}", seconds: 5}
        - delay: "{{ '00:01' }}"
    """)
    call, by_mapping, by_text = rule["actions"]
    assert call["service"] == "light.turn_{{ trigger.event.data.how }}"
    assert call["target"] == {"template": "{{ {'entity_id': trigger.event.data.lamp} }}"}
    assert call["data_template"] == "{{ trigger.event.data.data }}"
    assert by_mapping["duration"] == {"minutes": "{{ 2 }}", "seconds": 5}
    assert by_text["duration"] == "{{ '00:01' }}"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            "{repeat: {count: 2, times: 3, sequence: {action: a.b}}}",
            "4:25: rule 'x': actions[0].times: unknown field",
        ),
        (
            "{repeat: {count: 2, until: '{{ 1 }}', sequence: {action: a.b}}}",
            "4:5: rule 'x': actions[0]: give exactly one of count, while, until, for_each; "
            "got count, until",
        ),
        (
            "{repeat: {for_each: kitchen, sequence: {action: a.b}}}",
            "4:5: rule 'x': actions[0]: for_each: expected a list, or a template giving one",
        ),
        (
            "{variables: {2x: 1}}",
            "4:17: rule 'x': actions[0].variables: invalid variable name '2x'",
        ),
        (
            "{action: a.b, continue_on_error: 'yes'}",
            "4:38: rule 'x': actions[0].continue_on_error: expected true or false; got text",
        ),
        (
            "{parallel: [{action: a.b}, {delay: 5}]}",
            "4:5: rule 'x': actions[0]: branch 1 (delay) of a parallel action pauses the run",
        ),
        ("{action: a.b, target: '{{ 1 }}', entity_id: c.d}", "either 'template' or"),
    ],
)
def test_a_mistake_in_a_new_action_is_located_in_the_ha_text(action: str, expected: str) -> None:
    result = load(f"""\
    - id: x
      triggers: {{trigger: event, event_type: go}}
      actions:
      - {action}
    """)
    assert result.rules == ()
    [error] = result.errors
    assert expected in str(error), str(error)


def test_the_native_form_of_the_new_actions_loads_back_to_the_same_versions() -> None:
    for name in ("repeat.yaml", "parallel.yaml", "variables.yaml", "delays.yaml", "services.yaml"):
        loaded = load_file(CORPUS / name, name=name)
        again = load_text(native_yaml(loaded.rules), name)
        assert again.ok, [str(error) for error in again.errors]
        assert [r.version for r in again.rules] == [r.version for r in loaded.rules], name
