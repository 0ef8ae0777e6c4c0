"""Conditions of issue 13 part 4, as Home Assistant evaluates them: ``trigger`` (by trigger
id), ``state`` with ``match: any`` and an attribute, ``time`` bounded by an entity, and
``numeric_state`` with ``value_template`` and entity bounds. Pure, then through `RuleEngine`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from ruby_rules import load_text
from ruby_rules.context import Context, TriggerData
from ruby_rules.engine import RuleEngine
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # a Friday


def st(state: str, ago: timedelta = timedelta(0), **attributes: Any) -> EntityState:
    at = T0 - ago
    return EntityState(state=state, attributes=attributes, last_changed=at, last_updated=at)


def build(role: Role, config: dict[str, Any]) -> Any:
    registry = default_registry()
    return registry.build(registry.config(role, config["kind"]).model_validate(config))


def fired_by(trigger_id: str, **states: EntityState) -> Context:
    trigger = TriggerData("state", trigger_id, "e1", T0, "person.paulus")
    return Context(states=states, now=T0, trigger=trigger)


# --- trigger -----------------------------------------------------------------------------


def test_the_trigger_condition_reads_the_runs_trigger_id_one_or_a_list() -> None:
    one = build("condition", {"kind": "trigger", "id": "arriving"})
    assert one.holds(fired_by("arriving"))
    assert not one.holds(fired_by("leaving"))
    assert not one.evaluate({}, T0)  # outside any run there is no trigger
    either = build("condition", {"kind": "trigger", "id": ["arriving", "0"]})
    assert either.holds(fired_by("0"))  # a trigger without id is named by its position
    with pytest.raises(ValidationError):
        build("condition", {"kind": "trigger", "id": []})


def test_the_engine_runs_the_branch_of_the_trigger_that_fired() -> None:
    loaded = load_text(
        """
rules:
  - id: r
    description: d
    triggers:
      - {kind: state, id: arriving, entity_id: person.paulus, to: home}
      - {kind: state, entity_id: person.paulus, from: home}
    actions:
      - kind: choose
        options:
          - conditions: [{kind: trigger, id: arriving}]
            actions: [{kind: call, service: light.turn_on, target: {entity_id: light.a}}]
          - conditions: [{kind: and, conditions: [{kind: trigger, id: "1"}]}]
            actions: [{kind: call, service: light.turn_off, target: {entity_id: light.a}}]
""",
        "t.yaml",
    )
    assert loaded.ok, loaded.errors
    e = RuleEngine(tz=UTC)
    e.set_rules(loaded.rules, T0)
    seen = []
    for minute, where in ((1, "home"), (2, "work")):
        at = T0 + timedelta(minutes=minute)
        fx = e.on_state_changed(
            event_id=f"p{minute}",
            entity_id="person.paulus",
            old=e.states.get("person.paulus"),
            new=EntityState(state=where, last_changed=at, last_updated=at),
            now=at,
        )
        seen += [f"{c.domain}.{c.service}" for c in fx.commands]
    assert seen == ["light.turn_on", "light.turn_off"]


# --- state: match any, attribute -----------------------------------------------------------


def test_match_any_holds_when_one_entity_matches_and_all_is_the_default() -> None:
    doors = {"entity_id": ["binary_sensor.front", "binary_sensor.back"], "state": "on"}
    any_ = build("condition", {"kind": "state", **doors, "match": "any"})
    all_ = build("condition", {"kind": "state", **doors})
    one_open = {"binary_sensor.front": st("off"), "binary_sensor.back": st("on")}
    assert any_.evaluate(one_open, T0)
    assert not all_.evaluate(one_open, T0)
    assert not any_.evaluate({"binary_sensor.front": st("off")}, T0)  # the other is unknown
    held = build("condition", {"kind": "state", **doors, "match": "any", "for": "5m"})
    recent = {"binary_sensor.back": st("on", timedelta(minutes=2))}
    assert not held.evaluate(recent, T0)
    assert held.evaluate({**recent, "binary_sensor.front": st("on", timedelta(minutes=6))}, T0)
    with pytest.raises(ValidationError):
        build("condition", {"kind": "state", **doors, "match": "some"})


def test_an_attribute_state_condition_compares_the_attribute_and_misses_when_absent() -> None:
    mode = build(
        "condition",
        {"kind": "state", "entity_id": "climate.x", "attribute": "hvac_mode", "state": "heat"},
    )
    assert mode.evaluate({"climate.x": st("on", hvac_mode="heat")}, T0)
    assert not mode.evaluate({"climate.x": st("heat")}, T0)
    muted = build(
        "condition",
        {"kind": "state", "entity_id": "media_player.tv", "attribute": "muted", "state": True},
    )
    assert muted.evaluate({"media_player.tv": st("on", muted=True)}, T0)
    assert not muted.evaluate({"media_player.tv": st("on", muted="True")}, T0)
    assert not muted.evaluate({"media_player.tv": st("on", muted=False)}, T0)
    volume = build(
        "condition",
        {"kind": "state", "entity_id": "media_player.tv", "attribute": "volume", "state": 1},
    )
    assert volume.config.state == ("1",)  # a number is its text, never the flag true
    assert volume.evaluate({"media_player.tv": st("on", volume=1)}, T0)
    with pytest.raises(ValidationError, match="true / false compare an attribute only"):
        build("condition", {"kind": "state", "entity_id": "light.a", "state": True})


# --- time bounded by an entity ------------------------------------------------------------

LOCAL = timezone(timedelta(hours=1))


def at_clock(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, second, tzinfo=LOCAL)


@pytest.mark.parametrize(
    ("bound", "entity", "inside", "outside"),
    [("input_datetime.wake", st("07:30:00", hour=7, minute=30, second=0), (7, 30), (7, 29)),
     ("input_datetime.day", st("2026-11-20", year=2026, day=20), (23, 59, 59), (23, 59, 58)),
     ("time.alarm", st("06:15:00"), (6, 15), (6, 14)),
     ("sensor.alarm", st("2026-11-21T05:00:00+00:00", device_class="timestamp"), (6, 0), (5, 59))],
)  # fmt: skip
def test_after_an_entity_reads_its_time_of_day_as_ha_does(
    bound: str, entity: EntityState, inside: tuple[int, ...], outside: tuple[int, ...]
) -> None:
    condition = build("condition", {"kind": "time", "after": bound})
    assert condition.evaluate({bound: entity}, at_clock(*inside))
    assert not condition.evaluate({bound: entity}, at_clock(*outside))


def test_an_entity_bound_that_holds_no_time_fails_the_condition() -> None:
    after = build("condition", {"kind": "time", "after": "sensor.alarm", "before": "23:00"})
    for state in (
        st("2026-11-21T05:00:00+00:00"),  # not a timestamp sensor
        st("unavailable", device_class="timestamp"),
        st("soon", device_class="timestamp"),
    ):
        assert not after.evaluate({"sensor.alarm": state}, at_clock(12)), state
    assert not after.evaluate({}, at_clock(12))  # missing
    with pytest.raises(ValidationError, match="needs one of input_datetime, time, sensor"):
        build("condition", {"kind": "time", "after": "light.x"})


def test_an_entity_window_may_wrap_midnight() -> None:
    night = build(
        "condition", {"kind": "time", "after": "input_datetime.night", "before": "time.morning"}
    )
    states = {
        "input_datetime.night": st("22:00:00", hour=22, minute=0, second=0),
        "time.morning": st("06:30:00"),
    }
    assert night.evaluate(states, at_clock(23))
    assert night.evaluate(states, at_clock(6, 29))
    assert not night.evaluate(states, at_clock(6, 30))
    assert not night.evaluate(states, at_clock(12))


# --- numeric_state: value_template and entity bounds --------------------------------------


def test_numeric_condition_with_entity_bounds_and_value_template() -> None:
    band = build(
        "condition",
        {
            "kind": "numeric_state",
            "entity_id": "sensor.t",
            "above": "input_number.low",
            "below": "input_number.high",
        },
    )
    states = {"input_number.low": st("18"), "input_number.high": st("24"), "sensor.t": st("20")}
    assert band.evaluate(states, T0)
    assert not band.evaluate({**states, "sensor.t": st("25")}, T0)
    assert not band.evaluate({**states, "input_number.high": st("unavailable")}, T0)
    thermostat = build(
        "condition",
        {
            "kind": "numeric_state",
            "entity_id": "climate.living",
            "value_template": "{{ float(state.attributes.current_temperature) - 10 }}",
            "below": 25,
        },
    )
    assert thermostat.evaluate({"climate.living": st("heat", current_temperature=30)}, T0)
    assert not thermostat.evaluate({"climate.living": st("heat", current_temperature=36)}, T0)
    with pytest.raises(ExpressionError, match="failed"):
        thermostat.evaluate({"climate.living": st("heat", current_temperature="n/a")}, T0)
    by_trigger = build(
        "condition",
        {
            "kind": "numeric_state",
            "entity_id": "sensor.t",
            "value_template": "{{ state.state | float + (10 if trigger.id == 'boost' else 0) }}",
            "above": 25,
        },
    )
    assert by_trigger.holds(fired_by("boost", **{"sensor.t": st("20")}))
    assert not by_trigger.holds(fired_by("other", **{"sensor.t": st("20")}))
