"""Every registered processor kind accepts a valid config and refuses an invalid one."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import (
    REGISTRY,
    ROLES,
    Registry,
    RegistryError,
    default_registry,
)
from ruby_rules.processors.types import parse_duration, parse_time_of_day

STOP = {"kind": "stop", "reason": "done"}
ON = {"kind": "state", "entity_id": "light.a", "state": "on"}

# (role, valid config, invalid config, what the invalid one gets wrong)
EXAMPLES: list[tuple[Role, dict[str, Any], dict[str, Any], str]] = [
    ("trigger", {"kind": "state", "entity_id": "light.a", "to": "on", "for": "5m"},
     {"kind": "state", "entity_id": "light"}, "entity id without a domain"),
    ("trigger", {"kind": "state", "entity_id": "sun.sun", "attributes_too": True},
     {"kind": "state", "entity_id": "sun.sun", "attributes_too": True, "to": "on"},
     "every change, yet only to 'on'"),
    ("trigger", {"kind": "numeric_state", "entity_id": "sensor.t", "above": 20, "for": "1:00:00"},
     {"kind": "numeric_state", "entity_id": "sensor.t", "above": 30, "below": 20}, "empty range"),
    ("trigger", {"kind": "event", "event_type": "zha_event", "event_data": {"command": "on"}},
     {"kind": "event", "event_type": "zha event"}, "event type not a token"),
    ("trigger", {"kind": "homeassistant", "event": "start"},
     {"kind": "homeassistant", "event": "restart"}, "no such event"),
    ("trigger", {"kind": "webhook", "webhook_id": "garage-door", "allowed_methods": ["POST"]},
     {"kind": "webhook", "webhook_id": "garage/door"}, "webhook id not a path segment"),
    ("trigger", {"kind": "webhook", "webhook_id": "garage-door"},
     {"kind": "webhook", "webhook_id": "garage", "allowed_methods": ["PUT"]},
     "never called: the API takes webhooks by POST"),
    ("trigger", {"kind": "time", "at": ["06:45", "18:00:30"]},
     {"kind": "time", "at": "24:00"}, "no such time"),
    ("trigger", {"kind": "time_pattern", "minutes": "/5"},
     {"kind": "time_pattern", "minutes": 60}, "minute out of range"),
    ("trigger", {"kind": "template", "value_template": "{{ is_state('light.a', 'on') }}",
                 "for": "1m"},
     {"kind": "template", "value_template": "{{ now().hour > 7 }}"}, "reads the clock"),
    ("trigger", {"kind": "sun", "event": "sunset", "offset": "-01:00:00"},
     {"kind": "sun", "event": "dusk"}, "no such sun event"),
    ("trigger", {"kind": "zone", "entity_id": ["person.a", "person.b"], "zone": "zone.home",
                 "event": "leave"},
     {"kind": "zone", "entity_id": "person.a", "zone": ["zone.home"]}, "several zones"),
    ("condition", {"kind": "state", "entity_id": ["light.a", "light.b"], "state": ["on", "off"]},
     {"kind": "state", "entity_id": "light.a"}, "no state"),
    ("condition", {"kind": "numeric_state", "entity_id": "sensor.t", "below": 3},
     {"kind": "numeric_state", "entity_id": "sensor.t", "below": "cold"}, "bound not a number"),
    ("condition", {"kind": "sun", "after": "sunset", "before": "sunrise", "after_offset": "-30m"},
     {"kind": "sun", "after_offset": "1h"}, "no bound"),
    ("condition", {"kind": "zone", "entity_id": "person.a", "zone": ["zone.home", "zone.work"]},
     {"kind": "zone", "entity_id": "person.a"}, "no zone"),
    ("condition", {"kind": "time", "after": "22:00", "before": "06:00", "weekday": "sat"},
     {"kind": "time", "weekday": ["someday"]}, "unknown weekday"),
    ("condition", {"kind": "and", "conditions": [ON]},
     {"kind": "and", "conditions": []}, "no conditions"),
    ("condition", {"kind": "or", "conditions": [ON, {"kind": "not", "conditions": [ON]}]},
     {"kind": "or", "conditions": [{"kind": "stop", "reason": "x"}]}, "an action as a condition"),
    ("condition", {"kind": "not", "conditions": [ON]},
     {"kind": "not", "condition": [ON]}, "misspelt field"),
    ("condition", {"kind": "expression", "value": "{{ now().hour >= 22 }}"},
     {"kind": "expression", "value": "late"}, "no expression"),
    ("condition", {"kind": "trigger", "id": ["arriving", "0"]},
     {"kind": "trigger", "id": "not a token"}, "id not a token"),
    ("action", {"kind": "call", "service": "light.turn_on", "target": {"entity_id": "light.a"},
                "data": {"brightness_pct": 60}},
     {"kind": "call", "service": "light.turn_on", "target": {"entities": "light.a"}},
     "unknown target field"),
    ("action", {"kind": "delay", "duration": "90s"},
     {"kind": "delay", "duration": "90"}, "duration text without a unit"),
    ("action", {"kind": "wait_for", "trigger": {"kind": "event", "event_type": "x"},
                "timeout": "1m"},
     {"kind": "wait_for", "trigger": {"kind": "event", "event_type": "x"}}, "no timeout"),
    ("action", {"kind": "wait_template", "value_template": "{{ is_state('tv.a', 'off') }}",
                "timeout": "1h", "continue_on_timeout": False},
     {"kind": "wait_template", "value_template": "{{ is_state('tv.a', 'off') }}"}, "no timeout"),
    ("action", {"kind": "choose", "options": [{"conditions": [ON], "actions": [STOP]}],
                "default": [STOP]},
     {"kind": "choose", "options": [{"conditions": [ON]}]}, "option without actions"),
    ("action", {"kind": "if", "conditions": [ON], "then": [STOP], "else": [STOP]},
     {"kind": "if", "conditions": [ON], "then": [ON]}, "a condition as an action"),
    ("action", {"kind": "publish", "event_type": "hallway_lit", "data": {"n": 1}},
     {"kind": "publish", "event_type": "hallway.lit"}, "event type not a token"),
    ("action", {"kind": "fire_event", "event_type": "custom.doorbell", "data": {"n": 1}},
     {"kind": "fire_event", "event_type": "x" * 65}, "longer than Home Assistant allows"),
    ("action", {"kind": "stop", "reason": "done", "error": True},
     {"kind": "stop", "reason": ""}, "empty reason"),
    ("action", {"kind": "variables", "variables": {"level": "{{ 2 * 3 }}", "room": "hall"}},
     {"kind": "variables", "variables": {"trigger": 1}}, "a name the engine sets"),
    ("action", {"kind": "sequence", "actions": [STOP]},
     {"kind": "sequence", "actions": []}, "no actions"),
    ("action", {"kind": "parallel", "actions": [STOP, {"kind": "sequence", "actions": [STOP]}]},
     {"kind": "parallel", "actions": [{"kind": "delay", "duration": "1m"}]}, "a branch pauses"),
    ("action", {"kind": "repeat", "count": 3, "actions": [STOP]},
     {"kind": "repeat", "count": 3, "until": [ON], "actions": [STOP]}, "two ways to repeat"),
]  # fmt: skip


def config_class(role: Role, kind: str) -> Any:
    return default_registry().config(role, kind)


def test_every_registered_kind_has_an_example() -> None:
    registry = default_registry()
    covered = {(role, valid["kind"]) for role, valid, _, _ in EXAMPLES}
    registered = {(role, kind) for role in ROLES for kind in registry.kinds(role)}
    assert covered == registered


@pytest.mark.parametrize(("role", "valid", "invalid", "why"), EXAMPLES, ids=lambda v: str(v)[:30])
def test_config_accepts_valid_and_refuses_invalid(
    role: Role, valid: dict[str, Any], invalid: dict[str, Any], why: str
) -> None:
    default_registry()
    cls = config_class(role, valid["kind"])
    config = cls.model_validate(valid)
    assert config.kind == valid["kind"]
    with pytest.raises(ValidationError):
        cls.model_validate(invalid)
    with pytest.raises(ValidationError, match="extra"):
        cls.model_validate({**valid, "surplus": 1})
    with pytest.raises(ValidationError, match="frozen"):
        config.kind = "other"


def test_registry_builds_processors_by_config() -> None:
    registry = default_registry()
    config = config_class("condition", "state").model_validate(ON)
    assert type(registry.condition(config)).__name__ == "StateCondition"
    with pytest.raises(TypeError):
        registry.trigger(config)


def test_registry_is_frozen_and_refuses_duplicates() -> None:
    default_registry()
    cls = next(iter(REGISTRY._kinds["action"].values()))
    with pytest.raises(RegistryError, match="frozen"):
        REGISTRY.register(cls)
    with pytest.raises(KeyError):
        REGISTRY.config("action", "teleport")
    fresh = Registry()
    fresh.register(cls)
    with pytest.raises(RegistryError, match="already registered"):
        fresh.register(cls)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("00:05:00", timedelta(minutes=5)),
        ("26:00:01", timedelta(hours=26, seconds=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_duration_as_seconds_round_trips() -> None:
    assert parse_duration(300) == timedelta(minutes=5)
    assert parse_duration(0.5) == timedelta(milliseconds=500)


@pytest.mark.parametrize("text", ["", "5", "5 m", "m", "1d", "00:60:00", "-5m", -5, None, True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_times_of_day() -> None:
    assert parse_time_of_day("7:05") == time(7, 5)
    assert parse_time_of_day("23:59:59") == time(23, 59, 59)
    for bad in ("24:00", "12:60", "noon", 1200):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_time_of_day(bad)
