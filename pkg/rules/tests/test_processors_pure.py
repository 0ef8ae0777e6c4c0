"""The pure parts of the processors: trigger matching and condition evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ruby_rules.context import Context
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_schemas.ha_events import EntityState

NOW = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # a Friday


def st(state: str, *, ago: timedelta = timedelta(0), **attributes: Any) -> EntityState:
    changed = NOW - ago
    return EntityState(
        state=state, attributes=attributes, last_changed=changed, last_updated=changed
    )


def build(role: Role, config: dict[str, Any]) -> Any:
    registry = default_registry()
    return registry.build(registry.config(role, config["kind"]).model_validate(config))


def test_state_trigger_from_to() -> None:
    trigger = build("trigger", {"kind": "state", "entity_id": "binary_sensor.m", "to": "on"})
    assert trigger.matches_change(st("off"), st("on"))
    assert trigger.matches_change(None, st("on"))
    assert not trigger.matches_change(st("on"), st("off"))
    assert not trigger.matches_change(st("on", brightness=1), st("on", brightness=2))
    strict = build("trigger", {"kind": "state", "entity_id": "x.y", "from": ["off"], "to": "on"})
    assert strict.matches_change(st("off"), st("on"))
    assert not strict.matches_change(st("unavailable"), st("on"))


def test_state_trigger_any_change_and_attribute() -> None:
    anything = build("trigger", {"kind": "state", "entity_id": "x.y"})
    assert anything.matches_change(st("1"), st("2"))
    assert not anything.matches_change(st("1", a=1), st("1", a=2))
    attribute = build("trigger", {"kind": "state", "entity_id": "x.y", "attribute": "a", "to": 2})
    assert attribute.matches_change(st("1", a=1), st("1", a=2))
    assert not attribute.matches_change(st("1", a=2), st("2", a=2))


def test_numeric_state_trigger_fires_on_crossing_only() -> None:
    trigger = build(
        "trigger", {"kind": "numeric_state", "entity_id": "sensor.t", "above": 20, "below": 30}
    )
    assert trigger.matches_change(st("19"), st("21"))
    assert trigger.matches_change(st("unavailable"), st("21"))
    assert trigger.matches_change(None, st("29.9"))
    assert not trigger.matches_change(st("21"), st("22"))
    assert not trigger.matches_change(st("19"), st("30"))
    assert not trigger.matches_change(st("19"), st("nan"))
    by_attr = build(
        "trigger",
        {"kind": "numeric_state", "entity_id": "light.a", "attribute": "brightness", "below": 10},
    )
    assert by_attr.matches_change(st("on", brightness=50), st("on", brightness=5))


def test_event_trigger_matches_type_and_data_subset() -> None:
    trigger = build(
        "trigger", {"kind": "event", "event_type": "zha_event", "event_data": {"command": "on"}}
    )
    assert trigger.matches_event("zha_event", {"command": "on", "device": "x"})
    assert not trigger.matches_event("zha_event", {"command": "off"})
    assert not trigger.matches_event("zha_event", {})
    assert not trigger.matches_event("other", {"command": "on"})


def test_time_trigger_next_fire() -> None:
    trigger = build("trigger", {"kind": "time", "at": ["06:45", "22:00"]})
    assert trigger.next_fire(NOW) == NOW.replace(hour=22, minute=0)
    assert trigger.next_fire(NOW.replace(hour=22, minute=0)) == datetime(
        2026, 11, 21, 6, 45, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("pattern", "hit", "miss"),
    [
        ({"minutes": "/5"}, "10:35:00", "10:35:01"),
        ({"minutes": "/5"}, "00:00:00", "10:36:00"),
        ({"hours": 7}, "07:00:00", "07:01:00"),
        ({"seconds": "*"}, "13:14:15", None),
        ({"hours": "*", "minutes": 30}, "23:30:00", "23:31:00"),
    ],
)
def test_time_pattern(pattern: dict[str, Any], hit: str, miss: str | None) -> None:
    trigger = build("trigger", {"kind": "time_pattern", **pattern})
    assert trigger.matches(datetime.fromisoformat(f"2026-11-20T{hit}"))
    if miss is not None:
        assert not trigger.matches(datetime.fromisoformat(f"2026-11-20T{miss}"))


def test_state_condition_with_for() -> None:
    condition = build(
        "condition",
        {"kind": "state", "entity_id": ["light.a", "light.b"], "state": "on", "for": "5m"},
    )
    states = {
        "light.a": st("on", ago=timedelta(minutes=6)),
        "light.b": st("on", ago=timedelta(minutes=5)),
    }
    assert condition.evaluate(states, NOW)
    assert not condition.evaluate({**states, "light.b": st("on", ago=timedelta(minutes=4))}, NOW)
    assert not condition.evaluate({"light.a": states["light.a"]}, NOW)


def test_numeric_state_condition() -> None:
    condition = build(
        "condition", {"kind": "numeric_state", "entity_id": "sensor.lux", "below": 50}
    )
    assert condition.evaluate({"sensor.lux": st("12.5")}, NOW)
    assert not condition.evaluate({"sensor.lux": st("50")}, NOW)
    assert not condition.evaluate({"sensor.lux": st("unavailable")}, NOW)
    assert not condition.evaluate({}, NOW)


@pytest.mark.parametrize(
    ("config", "at", "expected"),
    [
        ({"after": "08:00", "before": "23:00"}, "21:30", True),
        ({"after": "08:00", "before": "23:00"}, "23:00", False),
        ({"after": "22:00", "before": "06:00"}, "23:59", True),
        ({"after": "22:00", "before": "06:00"}, "05:59", True),
        ({"after": "22:00", "before": "06:00"}, "06:00", False),
        ({"after": "22:00", "before": "06:00"}, "12:00", False),
        ({"weekday": ["fri"]}, "12:00", True),
        ({"weekday": ["sat", "sun"]}, "12:00", False),
        ({"before": "12:00"}, "11:59", True),
    ],
)
def test_time_condition(config: dict[str, Any], at: str, expected: bool) -> None:
    condition = build("condition", {"kind": "time", **config})
    now = datetime.fromisoformat(f"2026-11-20T{at}:00+01:00")  # a Friday, local time
    assert condition.evaluate({}, now) is expected


def test_logic_conditions() -> None:
    on = {"kind": "state", "entity_id": "light.a", "state": "on"}
    off = {"kind": "state", "entity_id": "light.a", "state": "off"}
    states = {"light.a": st("on")}
    assert build("condition", {"kind": "and", "conditions": [on, on]}).evaluate(states, NOW)
    assert not build("condition", {"kind": "and", "conditions": [on, off]}).evaluate(states, NOW)
    assert build("condition", {"kind": "or", "conditions": [off, on]}).evaluate(states, NOW)
    assert not build("condition", {"kind": "or", "conditions": [off]}).evaluate(states, NOW)
    assert build("condition", {"kind": "not", "conditions": [off]}).evaluate(states, NOW)
    assert not build("condition", {"kind": "not", "conditions": [off, on]}).evaluate(states, NOW)
    nested = {"kind": "not", "conditions": [{"kind": "or", "conditions": [off]}]}
    assert build("condition", nested).evaluate(states, NOW)


def test_choose_and_if_select_their_branch() -> None:
    on = {"kind": "state", "entity_id": "light.a", "state": "on"}
    first, second, fallback = (
        {"kind": "stop", "reason": reason} for reason in ("first", "second", "default")
    )
    choose = build(
        "action",
        {
            "kind": "choose",
            "options": [
                {"conditions": [{**on, "state": "off"}], "actions": [first]},
                {"conditions": [on], "actions": [second]},
            ],
            "default": [fallback],
        },
    )
    on_ctx = Context(states={"light.a": st("on")}, now=NOW)
    assert choose.take(on_ctx) == 1
    assert [a.config.reason for a in choose.branches()[1]] == ["second"]
    assert choose.take(Context({"light.a": st("x")}, NOW)) == 2
    assert [a.config.reason for a in choose.branches()[2]] == ["default"]
    branch = build("action", {"kind": "if", "conditions": [on], "then": [first]})
    assert branch.take(on_ctx) == 0
    assert [a.config.reason for a in branch.branches()[0]] == ["first"]
    assert branch.take(Context(states={}, now=NOW)) == 1
    assert branch.branches()[1] == ()


def test_call_splits_its_service() -> None:
    call = build("action", {"kind": "call", "service": "light.turn_on"})
    assert call.domain_service == ("light", "turn_on")
