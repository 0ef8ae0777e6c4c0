"""The ``zone`` trigger and condition: positions against zones as Home Assistant judges them
(geodesic distance, ``gps_accuracy``, ``radius``), with realistic person and tracker states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ruby_rules import load_text
from ruby_rules.engine import RuleEngine
from ruby_rules.geo import distance, has_location, in_zone
from ruby_rules.processors.conditions.zone import ZoneCondition, ZoneConditionConfig
from ruby_rules.processors.triggers.zone import ZoneTrigger, ZoneTriggerConfig
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
HOME = (52.3731, 4.8922)  # zone.home, radius 100 m
WORK = (52.3383, 4.8722)  # zone.work, radius 150 m, some 4 km south


def st(state: str, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=T0, last_updated=T0)


def zone(centre: tuple[float, float], radius: float, name: str = "Home") -> EntityState:
    return st("0", latitude=centre[0], longitude=centre[1], radius=radius, passive=False,
              friendly_name=name)  # fmt: skip


def person(state: str, latitude: float, longitude: float, accuracy: int = 12) -> EntityState:
    return st(state, latitude=latitude, longitude=longitude, gps_accuracy=accuracy,
              source="device_tracker.paulus_phone", friendly_name="Paulus")  # fmt: skip


ZONES = {"zone.home": zone(HOME, 100), "zone.work": zone(WORK, 150, "Work")}
AT_HOME = person("home", 52.37345, 4.89195)  # about 40 m from the centre
NEAR = person("not_home", 52.3745, 4.8937, accuracy=5)  # 186 m away
AT_WORK = person("Work", 52.33850, 4.87240)
AWAY = person("not_home", 52.3600, 4.9000)  # about 1.5 km away


def test_distance_is_geodesic_as_vincenty_published_it() -> None:
    # Vincenty (1975)'s own example: Flinders Peak to Buninyong, 54,972.271 m.
    flinders = (-(37 + 57 / 60 + 3.72030 / 3600), 144 + 25 / 60 + 29.52440 / 3600)
    buninyong = (-(37 + 39 / 60 + 10.15610 / 3600), 143 + 55 / 60 + 35.38390 / 3600)
    metres = distance(*flinders, *buninyong)
    assert metres == pytest.approx(54972.271, abs=0.01)
    assert distance(*HOME, *HOME) == 0.0


def test_in_zone_counts_the_accuracy_and_refuses_what_has_no_position() -> None:
    home = ZONES["zone.home"]
    assert in_zone(home, AT_HOME)
    assert not in_zone(home, NEAR)
    # 186 m away with a 100 m radius: inside once the fix is that uncertain (186 - 90 < 100)
    assert in_zone(home, person("not_home", 52.3745, 4.8937, accuracy=90))
    assert not in_zone(home, person("not_home", 52.3745, 4.8937, accuracy=80))
    assert not in_zone(home, person("unavailable", *HOME))
    assert not in_zone(st("unavailable", latitude=HOME[0], longitude=HOME[1], radius=100), AT_HOME)
    assert not in_zone(st("0", latitude=HOME[0], longitude=HOME[1]), AT_HOME)  # no radius
    with pytest.raises(ValueError, match="has no 'latitude' attribute"):
        in_zone(home, st("home"))  # a tracker by router presence: a state, no position
    assert has_location(AT_HOME)
    assert not has_location(st("home"))
    assert not has_location(st("home", latitude=52, longitude=4))  # HA wants floats


def trigger(event: str, entities: object = "person.paulus") -> ZoneTrigger:
    return ZoneTrigger(ZoneTriggerConfig.model_validate(
        {"kind": "zone", "entity_id": entities, "zone": "zone.home", "event": event}
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "enter", "leave"),
    [
        (AWAY, AT_HOME, True, False),
        (NEAR, AT_HOME, True, False),
        (AT_HOME, NEAR, False, True),
        (AT_HOME, AT_HOME, False, False),  # moving within the zone
        (AWAY, NEAR, False, False),  # moving outside it
        (None, AT_HOME, True, False),  # a new entity appears inside
        (AT_HOME, None, False, True),  # removed while inside
        (st("home"), AT_HOME, False, False),  # no position before: HA ignores the change
        (AT_HOME, st("not_home"), False, False),  # no position after
        (AWAY, person("unavailable", *HOME), False, False),
    ],
)
def test_the_trigger_fires_on_crossing_the_border_the_configured_way(
    old: EntityState | None, new: EntityState | None, enter: bool, leave: bool
) -> None:
    assert trigger("enter").matches_change(old, new, ZONES) is enter
    assert trigger("leave").matches_change(old, new, ZONES) is leave


def test_the_trigger_watches_its_entities_not_the_zone_and_needs_the_zone() -> None:
    both = trigger("enter", ["person.paulus", "device_tracker.anne_phone"])
    assert both.watch().entities == ("person.paulus", "device_tracker.anne_phone")
    assert not both.watch().timed
    assert not both.matches_change(AWAY, AT_HOME, {})  # unknown zone: nothing
    config = ZoneTriggerConfig.model_validate(
        {"kind": "zone", "entity_id": "person.paulus", "zone": "zone.home"}
    )
    assert config.event == "enter"
    with pytest.raises(ValueError, match="'enter' or 'leave'"):
        ZoneTriggerConfig.model_validate(
            {"kind": "zone", "entity_id": "person.p", "zone": "zone.home", "event": "arrive"}
        )


RULES = """
rules:
  - id: welcome
    description: the hall light when Paulus comes home
    triggers:
      - {kind: zone, entity_id: person.paulus, zone: zone.home, event: enter}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.hall}}
"""


def test_the_engine_runs_it_on_the_persons_change_and_not_on_the_zones() -> None:
    loaded = load_text(RULES, "zone.yaml")
    assert loaded.ok, loaded.errors
    engine = RuleEngine(tz=UTC)
    engine.set_states({**ZONES, "person.paulus": AWAY})
    engine.set_rules(loaded.rules, T0)

    def change(n: int, entity_id: str, new: EntityState) -> list[str]:
        at = T0 + timedelta(minutes=n)
        moved = new.model_copy(update={"last_changed": at, "last_updated": at})
        effects = engine.on_state_changed(
            event_id=f"e{n}", entity_id=entity_id, old=engine.states.get(entity_id),
            new=moved, now=at,
        )  # fmt: skip
        return [f"{c.domain}.{c.service}" for c in effects.commands]

    assert change(1, "person.paulus", NEAR) == []
    # The zone moves onto Paulus: he is now inside, but a zone's change fires nothing (HA).
    assert change(2, "zone.home", zone((52.3745, 4.8937), 100)) == []
    assert change(3, "zone.home", zone(HOME, 100)) == []
    assert change(4, "person.paulus", AT_HOME) == ["light.turn_on"]
    assert change(5, "person.paulus", AT_HOME) == []  # still inside


def holds(states: dict[str, EntityState], entities: object, zones: object) -> bool:
    condition = ZoneCondition(ZoneConditionConfig.model_validate(
        {"kind": "zone", "entity_id": entities, "zone": zones}
    ))  # fmt: skip
    return condition.evaluate(states, T0)


def test_the_condition_wants_every_entity_in_one_of_the_zones() -> None:
    states = {**ZONES, "person.paulus": AT_HOME, "person.anne": AT_WORK, "person.bob": AWAY}
    assert holds(states, "person.paulus", "zone.home")
    assert not holds(states, "person.anne", "zone.home")
    assert holds(states, ["person.paulus", "person.anne"], ["zone.home", "zone.work"])
    assert not holds(states, ["person.paulus", "person.bob"], ["zone.home", "zone.work"])
    states["person.bob"] = person("unavailable", *HOME)
    assert not holds(states, "person.bob", "zone.home")


def test_the_condition_names_what_it_cannot_judge_unless_the_answer_is_known() -> None:
    states = {**ZONES, "person.paulus": AT_HOME, "device_tracker.router": st("home")}
    with pytest.raises(ValueError, match=r"error matching person\.paulus with zone\.gone: "):
        holds(states, "person.paulus", "zone.gone")
    with pytest.raises(ValueError, match=r"entity device_tracker\.router has no 'latitude'"):
        holds(states, "device_tracker.router", "zone.home")
    with pytest.raises(ValueError, match=r"unknown entity person\.nobody"):
        holds(states, "person.nobody", "zone.home")
    # In zone.home: true, whatever zone.gone would have said (HA raises only without an answer).
    assert holds(states, "person.paulus", ["zone.gone", "zone.home"])
