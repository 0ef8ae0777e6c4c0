"""Trigger options of issue 13 part 4: ``not_from`` / ``not_to`` on a state trigger,
``value_template`` and entity bounds on a numeric_state trigger, an event trigger on several
types. Each as a pure processor, then through `RuleEngine`, as Home Assistant decides it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine
from ruby_rules.processors.base import Role
from ruby_rules.processors.registry import default_registry
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def st(state: str, at: datetime = T0, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=at, last_updated=at)


def build(role: Role, config: dict[str, Any]) -> Any:
    registry = default_registry()
    return registry.build(registry.config(role, config["kind"]).model_validate(config))


def engine(text: str, **states: EntityState) -> RuleEngine:
    loaded = load_text(text, "t.yaml")
    assert loaded.ok, loaded.errors
    e = RuleEngine(tz=UTC)
    e.set_states({entity.replace("__", "."): s for entity, s in states.items()})
    e.set_rules(loaded.rules, T0)
    return e


def change(e: RuleEngine, entity: str, new: str, minutes: float, **attrs: Any) -> Effects:
    at = T0 + timedelta(minutes=minutes)
    return e.on_state_changed(
        event_id=f"{entity}@{minutes}",
        entity_id=entity,
        old=e.states.get(entity),
        new=st(new, at, **attrs),
        now=at,
    )


def calls(fx: Effects) -> list[str]:
    return [f"{c.domain}.{c.service}" for c in fx.commands]


# --- state: not_from / not_to -------------------------------------------------------------


def test_not_from_fires_unless_the_old_state_is_one_of_them() -> None:
    trigger = build(
        "trigger",
        {"kind": "state", "entity_id": "sensor.t", "not_from": ["unavailable", "unknown"]},
    )
    assert trigger.matches_change(st("20"), st("21"))
    assert not trigger.matches_change(st("unavailable"), st("21"))
    assert not trigger.matches_change(st("unknown"), st("21"))
    assert trigger.matches_change(None, st("21"))  # a new entity left no not_from state
    assert not trigger.matches_change(st("21", a=1), st("21", a=2))  # the state must change


def test_not_to_fires_unless_the_new_state_is_one_of_them_and_its_for_hold_agrees() -> None:
    trigger = build(
        "trigger", {"kind": "state", "entity_id": "sensor.t", "not_to": "unavailable", "for": 60}
    )
    assert trigger.matches_change(st("20"), st("21"))
    assert not trigger.matches_change(st("20"), st("unavailable"))
    assert trigger.matches_change(st("unavailable"), st("20"))
    assert trigger.still_holds(st("22"))
    assert not trigger.still_holds(st("unavailable"))
    assert not trigger.still_holds(None)
    both = build(
        "trigger",
        {"kind": "state", "entity_id": "x.y", "not_from": "off", "to": ["on", "idle"]},
    )
    assert both.matches_change(st("idle"), st("on"))
    assert not both.matches_change(st("off"), st("on"))
    assert not both.matches_change(st("idle"), st("paused"))


@pytest.mark.parametrize(
    ("given", "named"), [({"from": "a", "not_from": "b"}, "'from' or 'not_from'"),
                         ({"to": "a", "not_to": ["b"]}, "'to' or 'not_to'")]
)  # fmt: skip
def test_a_value_and_its_negation_together_are_refused_naming_both(
    given: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=f"give {named}, not both"):
        build("trigger", {"kind": "state", "entity_id": "x.y", **given})


def test_the_engine_fires_not_to_and_disarms_its_for_when_the_entity_goes_unavailable() -> None:
    e = engine(
        """
rules:
  - id: r
    description: d
    triggers: [{kind: state, entity_id: sensor.t, not_to: unavailable, for: 5m}]
    actions: [{kind: call, service: light.turn_on, target: {entity_id: light.a}}]
""",
        sensor__t=st("20"),
    )
    assert [t.status for t in change(e, "sensor.t", "21", 1).traces] == ["armed"]
    assert [t.status for t in change(e, "sensor.t", "unavailable", 3).traces] == ["disarmed"]
    assert e.next_deadline() is None
    change(e, "sensor.t", "22", 4)
    deadline = e.next_deadline()
    assert deadline == T0 + timedelta(minutes=9)
    fired = Effects()
    for key in e.due(deadline):
        fired.extend(e.fire(key, deadline))
    assert calls(fired) == ["light.turn_on"]


# --- numeric_state: value_template and entity bounds --------------------------------------


def test_value_template_computes_the_value_from_the_state_object() -> None:
    trigger = build(
        "trigger",
        {
            "kind": "numeric_state",
            "entity_id": "sensor.phone",
            "value_template": "{{ state.attributes.battery }}",
            "below": 20,
        },
    )
    views = {"sensor.phone": st("home", battery=15)}
    assert trigger.matches_change(st("home", battery=25), views["sensor.phone"], views)
    assert not trigger.matches_change(st("home", battery=18), views["sensor.phone"], views)
    assert not trigger.matches_change(st("home", battery=25), st("home", battery="n/a"))
    assert trigger.still_holds(st("home", battery=3))
    assert not trigger.still_holds(st("home", battery=30))
    failing = build(
        "trigger",
        {"kind": "numeric_state", "entity_id": "x.y", "value_template": "{{ 1 / 0 }}", "above": 0},
    )
    assert not failing.matches_change(st("1"), st("2"))  # HA logs it and fires nothing


def test_value_template_sees_the_entity_and_the_other_states() -> None:
    trigger = build(
        "trigger",
        {
            "kind": "numeric_state",
            "entity_id": ["sensor.a", "sensor.b"],
            "value_template": "{{ state.state | float - states('sensor.offset') | float }}"
            "{% if state.entity_id != trigger.entity_id %}x{% endif %}",
            "above": 10,
        },
    )
    new = st("15")
    views = {"sensor.b": new, "sensor.a": st("0"), "sensor.offset": st("2")}
    assert trigger.matches_change(st("11"), new, views)  # 9 -> 13
    assert not trigger.matches_change(st("13"), new, views)  # 11 -> 13: already above


def test_an_entity_bound_reads_its_numeric_state_and_an_unusable_one_matches_nothing() -> None:
    trigger = build(
        "trigger",
        {"kind": "numeric_state", "entity_id": "sensor.t", "above": "input_number.max"},
    )
    assert trigger.config.bound_entities() == ("input_number.max",)
    assert trigger.watch().entities == ("sensor.t",)  # a change of the bound fires nothing
    for bound in ("22.5", "unavailable", "unknown", "warm"):
        views = {"input_number.max": st(bound)}
        assert trigger.matches_change(st("20"), st("23"), views) is (bound == "22.5"), bound
    assert not trigger.matches_change(st("20"), st("23"), {})  # the bound entity is missing
    both = build(
        "trigger",
        {"kind": "numeric_state", "entity_id": "sensor.t", "above": 10, "below": "sensor.max"},
    )
    assert both.matches_change(st("9"), st("11"), {"sensor.max": st("12")})
    assert not both.matches_change(st("9"), st("13"), {"sensor.max": st("12")})


@pytest.mark.parametrize(
    ("bounds", "message"),
    [({"above": "light.x"}, "expected a number or an entity of input_number, number"),
     ({"above": "15"}, "expected a number or an entity"),
     ({"above": True}, "expected a number; got true/false"),
     ({"above": 5, "below": 5}, "'above' (5.0) must be less than 'below' (5.0)"),
     ({"value_template": "no template", "above": 1}, "holds no template")],
)  # fmt: skip
def test_bad_bounds_and_templates_are_refused(bounds: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        build("trigger", {"kind": "numeric_state", "entity_id": "sensor.t", **bounds})


NUMERIC_BOUND = """
rules:
  - id: r
    description: d
    triggers:
      - {kind: numeric_state, entity_id: sensor.t, above: input_number.max, for: 2m}
    actions: [{kind: call, service: fan.turn_on, target: {entity_id: fan.a}}]
"""


def test_the_engine_fires_on_the_watched_entity_and_never_on_the_bound_alone() -> None:
    e = engine(NUMERIC_BOUND, sensor__t=st("20"), input_number__max=st("25"))
    assert change(e, "input_number.max", "18", 1).traces == []  # now 20 > 18: nothing fires
    assert e.next_deadline() is None
    # the next change of the sensor is judged against the bound as it is then: 20 was above
    assert change(e, "sensor.t", "21", 2).traces == []
    change(e, "input_number.max", "30", 3)
    assert [t.status for t in change(e, "sensor.t", "31", 4).traces] == ["armed"]
    change(e, "input_number.max", "40", 5)  # the bound moves above the value during 'for'
    deadline = e.next_deadline()
    assert deadline == T0 + timedelta(minutes=6)
    refused = Effects()
    for key in e.due(deadline):
        refused.extend(e.fire(key, deadline))
    assert ([t.status for t in refused.traces], refused.commands) == (["not_run"], [])
    change(e, "input_number.max", "30", 7)
    change(e, "sensor.t", "29", 8)
    change(e, "sensor.t", "32", 9)
    deadline = e.next_deadline()
    assert deadline is not None
    fired = Effects()
    for key in e.due(deadline):
        fired.extend(e.fire(key, deadline))
    assert calls(fired) == ["fan.turn_on"]


# --- event: several types -----------------------------------------------------------------


def test_an_event_trigger_on_several_types_watches_and_matches_each() -> None:
    trigger = build(
        "trigger",
        {"kind": "event", "event_type": ["scene_reloaded", "automation_reloaded"],
         "event_data": {"by": "me"}},
    )  # fmt: skip
    assert trigger.watch().event_types == ("scene_reloaded", "automation_reloaded")
    assert trigger.matches_event("automation_reloaded", {"by": "me"})
    assert trigger.matches_event("scene_reloaded", {"by": "me", "more": 1})
    assert not trigger.matches_event("scene_reloaded", {"by": "you"})
    assert not trigger.matches_event("zha_event", {"by": "me"})
    one = build("trigger", {"kind": "event", "event_type": "zha_event"})
    assert one.config.model_dump()["event_type"] == "zha_event"  # its hash is unchanged
    with pytest.raises(ValidationError):
        build("trigger", {"kind": "event", "event_type": []})


def test_the_engine_fires_on_each_type_and_the_gateway_is_asked_for_both() -> None:
    e = engine("""
rules:
  - id: r
    description: d
    triggers: [{kind: event, event_type: [a_done, b_done]}]
    actions: [{kind: call, service: light.turn_on, target: {entity_id: light.a}}]
""")
    assert e.rules["r"].program.event_types() == frozenset({"a_done", "b_done"})
    fired = [
        calls(e.on_event(event_id=f"{kind}1", event_type=kind, data={}, fired_at=T0, now=T0))
        for kind in ("a_done", "b_done", "c_done")
    ]
    assert fired == [["light.turn_on"], ["light.turn_on"], []]


def test_a_template_value_held_for_counts_from_the_change_not_from_the_state() -> None:
    e = engine(
        """
rules:
  - id: r
    description: d
    triggers:
      - kind: numeric_state
        entity_id: sensor.phone
        value_template: "{{ state.attributes.battery }}"
        below: 20
        for: 10m
    actions: [{kind: call, service: notify.notify, data: {message: charge}}]
""",
        sensor__phone=st("home", T0 - timedelta(hours=4), battery=50),
    )
    since = T0 - timedelta(hours=3)  # the state itself has been "home" since then

    def battery(level: int, minutes: int) -> Effects:
        at = T0 + timedelta(minutes=minutes)
        new = EntityState(
            state="home", attributes={"battery": level}, last_changed=since, last_updated=at
        )
        old = e.states["sensor.phone"]
        return e.on_state_changed(
            event_id=f"b{minutes}", entity_id="sensor.phone", old=old, new=new, now=at
        )

    assert [t.status for t in battery(15, 1).traces] == ["armed"]
    assert e.next_deadline() == T0 + timedelta(minutes=11)  # not three hours ago
    battery(12, 5)  # still below: the hold goes on
    deadline = T0 + timedelta(minutes=11)
    fired = Effects()
    for key in e.due(deadline):
        fired.extend(e.fire(key, deadline))
    assert calls(fired) == ["notify.notify"]
