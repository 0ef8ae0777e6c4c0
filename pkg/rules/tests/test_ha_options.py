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
