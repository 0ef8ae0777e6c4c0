"""Trigger options of issue 13 part 4: ``not_from`` / ``not_to`` on a state trigger,
``value_template`` and entity bounds on a numeric_state trigger, an event trigger on several
types. Each as a pure processor, then through `RuleEngine`, as Home Assistant decides it."""

from __future__ import annotations

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
