"""Home Assistant's forms of the trigger options and conditions of issue 13 part 4 load into
the native kinds (``not_from``, ``value_template``, entity bounds, several event types, the
``trigger`` condition, ``match: any``, time bounded by an entity), and what stays
unsupported is refused by name at its line."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

import pytest

from ruby_rules import LoadResult, load_text


def load(text: str) -> LoadResult:
    return load_text(dedent(text), "automations.yaml")


def native(trigger: str = "", condition: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """The native trigger and first condition of one automation (given as flow mappings)."""
    text = (
        "- id: x\n"
        f"  trigger: {trigger or '{platform: state, entity_id: light.a, to: on}'}\n"
        + (f"  condition: {condition}\n" if condition else "")
        + "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    result = load(text)
    assert result.ok, [str(e) for e in result.errors]
    config = result.rules[0].config
    first = config.conditions[0].model_dump(by_alias=True, exclude_none=True) if condition else {}
    return config.triggers[0].model_dump(by_alias=True, exclude_none=True), first


def refusal(text: str) -> str:
    result = load(text)
    assert result.rules == ()
    [message] = [str(e) for e in result.errors]
    return message


def test_not_from_and_not_to_translate_and_null_means_any() -> None:
    trigger, _ = native("{platform: state, entity_id: sensor.t, not_from: [unavailable, unknown]}")
    assert trigger["not_from"] == ("unavailable", "unknown")
    trigger, _ = native("{trigger: state, entity_id: sensor.t, not_to: unavailable, for: 30}")
    assert (trigger["not_to"], trigger["for"].total_seconds()) == (("unavailable",), 30)
    trigger, _ = native("{trigger: state, entity_id: sensor.t, to: 'on', not_from: ~}")
    assert "not_from" not in trigger


@pytest.mark.parametrize(
    ("fields", "where", "named"),
    [("from: a, not_from: b", "2:12", "'from' or 'not_from'"),
     ("to: a, not_to: b", "2:12", "'to' or 'not_to'")],
)  # fmt: skip
def test_a_value_and_its_negation_together_are_an_error_naming_both(
    fields: str, where: str, named: str
) -> None:
    message = refusal(
        f"- id: x\n  trigger: {{platform: state, entity_id: a.b, {fields}}}\n"
        "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    assert message == f"automations.yaml:{where}: rule 'x': triggers[0]: give {named}, not both"


def test_numeric_state_value_template_and_entity_bounds_translate() -> None:
    trigger, condition = native(
        "{platform: numeric_state, entity_id: sensor.phone, below: '20',"
        " value_template: '{{ state.attributes.battery }}'}",
        "{condition: numeric_state, entity_id: sensor.t, above: input_number.low,"
        " below: sensor.high}",
    )
    assert (trigger["below"], trigger["value_template"]) == (20, "{{ state.attributes.battery }}")
    assert (condition["above"], condition["below"]) == ("input_number.low", "sensor.high")


def test_an_entity_bound_of_another_domain_is_refused_at_its_place() -> None:
    message = refusal(
        "- id: x\n  trigger: {platform: numeric_state, entity_id: sensor.t, above: light.x}\n"
        "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    assert message.startswith(
        "automations.yaml:2:66: rule 'x': triggers[0].above: expected a number or an entity of "
        "input_number, number, sensor, zone"
    )


def test_an_event_trigger_on_several_types_translates_and_one_type_stays_text() -> None:
    several, _ = native("{trigger: event, event_type: [automation_reloaded, scene_reloaded]}")
    assert several["event_type"] == ("automation_reloaded", "scene_reloaded")
    one, _ = native("{trigger: event, event_type: [zha_event]}")
    assert one["event_type"] == "zha_event"
    message = refusal(
        "- id: x\n  trigger: {platform: event, event_type: [a, '{{ b }}']}\n"
        "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    assert "event_type: an event type from a template is not supported yet" in message


def test_trigger_match_any_and_time_entity_conditions_translate() -> None:
    _, by_id = native(condition="{condition: trigger, id: [arriving, 1]}")
    assert by_id == {"kind": "trigger", "id": ("arriving", "1")}
    _, doors = native(
        condition="{condition: state, entity_id: [a.b, c.d], state: 'on', match: any}"
    )
    assert doors["match"] == "any"
    _, window = native(
        condition="{condition: time, after: input_datetime.start, before: sensor.alarm}"
    )
    assert (window["after"], window["before"]) == ("input_datetime.start", "sensor.alarm")


def test_a_state_compared_with_an_input_entitys_state_is_refused_by_name() -> None:
    message = refusal(
        "- id: x\n  trigger: {platform: state, entity_id: light.a, to: 'on'}\n"
        "  condition: {condition: state, entity_id: light.a, state: input_select.mode}\n"
        "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    assert message == (
        "automations.yaml:3:53: rule 'x': condition.state: a state condition on an input "
        "entity's state (input_select.mode) is not supported yet"
    )


@pytest.mark.parametrize(
    "conditions",
    [
        '"{{ true }}"',
        "['{{ true }}']",
        "[{and: ['{{ true }}', {not: ['{{ false }}']}]}]",
        "[{condition: or, conditions: ['{{ false }}', '{{ true }}']}]",
    ],
)
def test_the_template_shorthand_loads_wherever_ha_takes_a_condition(conditions: str) -> None:
    for where in (f"  condition: {conditions}\n", ""):
        text = (
            "- id: x\n  trigger: {platform: state, entity_id: light.a, to: 'on'}\n" + where +
            f"  action:\n    - if: {conditions}\n      then: [{{service: light.turn_on,"
            " entity_id: light.b}]\n"
            f"    - choose: [{{conditions: {conditions}, sequence: {{delay: 1}}}}]\n"
            f"    - condition: and\n      conditions: {conditions}\n"
        )  # fmt: skip
        result = load(text)
        assert result.ok, [str(e) for e in result.errors]
        places = 4 if where else 3  # conditions, if, a choose option, a condition step
        dumped = str(result.rules[0].config.model_dump())
        assert dumped.count("'kind': 'expression'") == places * conditions.count("{{")


def test_an_attribute_state_condition_takes_true_and_false_as_ha_does() -> None:
    _, muted = native(
        condition="{condition: state, entity_id: media_player.tv, attribute: is_volume_muted,"
        " state: true}"
    )
    assert muted["state"] == (True,)
    message = refusal(
        "- id: x\n  trigger: {platform: state, entity_id: light.a, to: 'on'}\n"
        "  condition: {condition: state, entity_id: light.a, state: false}\n"
        "  action: {service: light.turn_on, entity_id: light.b}\n"
    )
    assert "conditions[0]: true / false compare an attribute only" in message
