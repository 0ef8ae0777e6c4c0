"""Automations of the HA corpus (rules/examples/ha), run as ``rubyctl rules test`` runs them:
each gives the calls Home Assistant would make, at the times it would make them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from ruby_ctl.rules_sim import BusEvent, Happening, SetState, SimEvent, Simulation
from ruby_rules import load_file
from ruby_schemas.ha_events import EntityState

CORPUS = Path(__file__).resolve().parents[3] / "rules" / "examples" / "ha"
T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # a Friday evening


def at(minutes: float, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


def set_state(minutes: float, entity_id: str, state: str, **attributes: JsonValue) -> SetState:
    when = at(minutes)
    return SetState(when, f"{entity_id}@{when.isoformat()}", entity_id, state, attributes)


def event(minutes: float, event_type: str, **data: JsonValue) -> BusEvent:
    when = at(minutes)
    return BusEvent(when, f"{event_type}@{when.isoformat()}", event_type, data, when)


def states(**values: str) -> dict[str, EntityState]:
    before = T0 - timedelta(hours=1)
    return {
        entity.replace("__", "."): EntityState(
            state=value, attributes={}, last_changed=before, last_updated=before
        )
        for entity, value in values.items()
    }


def run(
    file: str,
    rule_id: str,
    events: Sequence[SimEvent],
    *,
    start: datetime = T0,
    until: timedelta = timedelta(hours=1),
    initial: dict[str, EntityState] | None = None,
    what: str = "call",
) -> list[str]:
    """The happenings of one corpus automation, as ``HH:MM:SS <text>`` lines."""
    loaded = load_file(CORPUS / file, name=file)
    rules = [rule for rule in loaded.rules if rule.id == rule_id]
    assert rules, f"{rule_id} does not load from {file}"
    sim = Simulation(rules, start=start, tz=UTC, states=initial)
    out: list[Happening] = []
    for item in events:
        out += sim.handle(item)
    out += sim.advance((events[-1].time if events else start) + until)
    return [f"{h.time:%H:%M:%S} {h.text}" for h in out if h.what == what]


def test_a_state_trigger_fires_on_its_change_only() -> None:
    events = [
        set_state(0, "binary_sensor.hallway_motion", "off"),
        set_state(1, "binary_sensor.hallway_motion", "on"),
        set_state(2, "binary_sensor.hallway_motion", "off"),
    ]
    assert run("state_triggers.yaml", "motion_light_on", events) == [
        "18:01:00 call light.turn_on light.hallway"
    ]


def test_for_fires_once_the_state_held_and_not_when_it_changed_back() -> None:
    held = [set_state(0, "binary_sensor.front_door", "on")]
    assert run("state_triggers.yaml", "door_left_open", held) == [
        '18:05:00 call notify.notify (no target) {"message": "The front door has been open '
        'for 5 minutes"}'
    ]
    closed = [*held, set_state(3, "binary_sensor.front_door", "off")]
    assert run("state_triggers.yaml", "door_left_open", closed) == []


def test_an_attribute_trigger_renders_the_new_value() -> None:
    events = [
        set_state(1, "climate.living_room", "heat", temperature=21),
        set_state(2, "climate.living_room", "heat", temperature=21, current_temperature=19),
    ]
    before = T0 - timedelta(hours=1)
    heating = EntityState(
        state="heat", attributes={"temperature": 20}, last_changed=before, last_updated=before
    )
    initial = {"climate.living_room": heating}
    assert run("state_triggers.yaml", "thermostat_target_changed", events, initial=initial) == [
        '18:01:00 call notify.notify (no target) {"message": "New target: 21"}'
    ]


def test_numeric_state_fires_on_crossing_and_the_old_spelling_waits_its_for() -> None:
    temperature = [
        set_state(0, "sensor.living_room_temperature", "24"),
        set_state(1, "sensor.living_room_temperature", "26"),
        set_state(2, "sensor.living_room_temperature", "27"),  # still above: no new crossing
    ]
    assert run("numeric_state.yaml", "fan_on_when_hot", temperature) == [
        "18:01:00 call fan.turn_on fan.living_room"
    ]
    cold = [
        set_state(0, "sensor.bedroom_temperature", "18"),
        set_state(1, "sensor.bedroom_temperature", "16.5"),
    ]
    assert run("numeric_state.yaml", "heater_on_when_cold_for_10_minutes", cold) == [
        "18:11:00 call switch.turn_on switch.bedroom_heater"
    ]


def test_time_and_time_pattern_triggers_fire_on_the_clock() -> None:
    morning = T0.replace(hour=6, minute=58)
    assert run("time.yaml", "morning_lights", [], start=morning, until=timedelta(minutes=5)) == [
        "07:00:00 call light.turn_on light.kitchen"
    ]
    fired = run(
        "time_pattern.yaml",
        "every_five_minutes",
        [],
        start=at(1),
        until=timedelta(minutes=15),
    )
    assert [line[:8] for line in fired] == ["18:05:00", "18:10:00", "18:15:00"]


def test_an_event_trigger_matches_its_data() -> None:
    ieee = "00:15:8d:00:02:3e:0a:4c"
    events = [
        event(1, "zha_event", device_ieee=ieee, command="single"),
        event(2, "zha_event", device_ieee=ieee, command="double"),
    ]
    assert run("event.yaml", "zha_button_pressed", events) == [
        "18:01:00 call light.toggle light.desk"
    ]


def test_a_template_condition_and_data_template_as_ha_renders_them() -> None:
    motion = [set_state(1, "binary_sensor.office_motion", "on")]
    dark = states(sensor__office_illuminance="10", binary_sensor__office_motion="off")
    assert run("template.yaml", "template_shorthand", motion, initial=dark) == [
        '18:01:00 call light.turn_on light.office {"brightness": 100}'
    ]
    bright = states(sensor__office_illuminance="300", binary_sensor__office_motion="off")
    assert run("template.yaml", "template_shorthand", motion, initial=bright) == []


def test_delays_in_ha_forms_wait_as_long() -> None:
    closed = [
        set_state(0, "binary_sensor.garage_door", "on"),
        set_state(1, "binary_sensor.garage_door", "off"),
    ]
    assert run("delays.yaml", "delay_hms", closed) == ["18:06:00 call light.turn_off light.garage"]
    ring = [
        set_state(0, "binary_sensor.doorbell", "off"),
        set_state(1, "binary_sensor.doorbell", "on"),
    ]
    assert run("delays.yaml", "delay_seconds", ring) == [
        "18:01:00 call switch.turn_on switch.chime",
        "18:01:30 call switch.turn_off switch.chime",
    ]


def test_choose_takes_the_first_option_that_holds_else_the_default() -> None:
    press = [event(1, "living_room_button")]
    off = states(light__living_room="off", media_player__living_room="idle")
    playing = states(light__living_room="on", media_player__living_room="playing")
    neither = states(light__living_room="on", media_player__living_room="idle")
    assert run("choose_if.yaml", "choose_by_state", press, initial=off) == [
        "18:01:00 call light.turn_on light.living_room"
    ]
    assert run("choose_if.yaml", "choose_by_state", press, initial=playing) == [
        "18:01:00 call media_player.media_pause media_player.living_room"
    ]
    assert run("choose_if.yaml", "choose_by_state", press, initial=neither) == [
        "18:01:00 call light.turn_off light.living_room"
    ]


def test_if_then_else_and_a_condition_step() -> None:
    motion = [set_state(1, "binary_sensor.bathroom_motion", "on")]
    late = T0.replace(hour=23, minute=30)
    assert run("choose_if.yaml", "if_then_else", motion) == [
        '18:01:00 call light.turn_on light.bathroom {"brightness_pct": 100}'
    ]
    late_motion = [SetState(late, "late", "binary_sensor.bathroom_motion", "on")]
    assert run("choose_if.yaml", "if_then_else", late_motion, start=late) == [
        '23:30:00 call light.turn_on light.bathroom {"brightness_pct": 10}'
    ]
    noon = T0.replace(hour=12, minute=59)
    sunny = states(sensor__south_facade_illuminance="35000")
    cloudy = states(sensor__south_facade_illuminance="8000")
    step: tuple[str, str, list[SimEvent]] = ("choose_if.yaml", "condition_as_a_step", [])
    assert run(*step, start=noon, until=timedelta(minutes=2), initial=sunny) == [
        '13:00:00 call notify.notify (no target) {"message": "Checking the sun"}',
        "13:00:00 call cover.close_cover cover.south_blinds",
    ]
    assert run(*step, start=noon, until=timedelta(minutes=2), initial=cloudy) == [
        '13:00:00 call notify.notify (no target) {"message": "Checking the sun"}'
    ]
    [ended] = run(*step, start=noon, until=timedelta(minutes=2), initial=cloudy, what="run")
    assert "stopped: the condition at actions[1] did not hold" in ended


def test_wait_for_trigger_goes_on_when_it_fires_and_stops_on_timeout() -> None:
    opened = [
        set_state(0, "binary_sensor.front_door", "off"),
        set_state(1, "binary_sensor.front_door", "on"),
    ]
    closed = [*opened, set_state(3, "binary_sensor.front_door", "off")]
    assert run("wait.yaml", "wait_for_door_close", closed) == [
        "18:01:00 call light.turn_on light.porch",
        "18:03:00 call light.turn_off light.porch",
    ]
    assert run("wait.yaml", "wait_for_door_close", opened) == [
        "18:01:00 call light.turn_on light.porch"  # continue_on_timeout: false
    ]


def test_old_service_spellings_and_the_scene_shorthand_call_as_ha_does() -> None:
    porch = [set_state(1, "binary_sensor.porch_motion", "on")]
    assert run("services.yaml", "old_data_template_with_entity", porch) == [
        '18:01:00 call light.turn_on light.porch {"brightness": 255}'
    ]
    assert run("services.yaml", "service_template_static", [event(1, "all_off")]) == [
        "18:01:00 call switch.turn_off switch.tv"
    ]
    playing = [set_state(1, "media_player.living_room", "playing")]
    assert run("services.yaml", "scene_shorthand", playing) == [
        "18:01:00 call scene.turn_on scene.movie_night"
    ]
    motion = [set_state(1, "binary_sensor.stairs_motion", "on")]
    assert run("services.yaml", "disabled_action", motion) == []  # its trigger is disabled


def test_an_automation_without_id_runs_under_the_id_derived_from_its_alias() -> None:
    evening = T0.replace(hour=21, minute=29)
    assert run(
        "modes.yaml", "garden_lights_at_21_30", [], start=evening, until=timedelta(minutes=2)
    ) == ["21:30:00 call light.turn_on light.garden"]


def test_restart_mode_starts_the_wait_again() -> None:
    passes = [
        set_state(0, "binary_sensor.hallway_motion", "on"),
        set_state(1, "binary_sensor.hallway_motion", "off"),
        set_state(1.5, "binary_sensor.hallway_motion", "on"),
    ]
    assert run("modes.yaml", "restart_mode", passes) == [
        "18:00:00 call light.turn_on light.hallway",
        "18:01:30 call light.turn_on light.hallway",
        "18:03:30 call light.turn_off light.hallway",
    ]


def home(at_time: datetime = T0) -> dict[str, EntityState]:
    """``zone.home`` of the real-HA suite's config (Amsterdam), as HA reports it."""
    attributes: dict[str, JsonValue] = {"latitude": 52.37, "longitude": 4.89, "radius": 100}
    return {"zone.home": EntityState(state="0", attributes=attributes, last_changed=at_time,
                                     last_updated=at_time)}  # fmt: skip


def test_sun_triggers_fire_at_sunset_and_sunrise_shifted_by_their_offsets() -> None:
    # HA (astral) there: sunset 2026-12-04 15:28:44, sunrise 2026-12-05 07:33:33 UTC; Ruby
    # Core's NOAA equations give 15:29:06 and 07:33:10 (22 s apart, within a minute).
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    day = timedelta(hours=24)
    assert run("sun.yaml", "lights_at_sunset", [], start=noon, until=day, initial=home()) == [
        "14:44:05 call light.turn_on light.porch"  # 45 minutes before (15:29:05.99)
    ]
    assert run("sun.yaml", "blinds_at_sunrise", [], start=noon, until=day, initial=home()) == [
        "07:33:10 call cover.open_cover cover.living_room"
    ]
    assert run("sun.yaml", "porch_off_after_sunrise", [], start=noon, until=day,
               initial=home()) == ["08:03:10 call light.turn_off light.porch"]  # fmt: skip
    # Without a home location there is no sunset to wait for: nothing fires.
    assert run("sun.yaml", "lights_at_sunset", [], start=noon, until=day) == []


def test_sun_conditions_hold_at_night_and_in_the_shifted_daylight() -> None:
    start = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    motion = [
        SetState(start + timedelta(hours=h), f"m{h}", "binary_sensor.garden_motion", s, {})
        for h, s in ((1, "on"), (2, "off"), (12, "on"), (13, "off"), (20, "on"))
    ]
    assert run("sun.yaml", "motion_after_dark", motion, start=start, initial=home(start)) == [
        "01:00:00 call light.turn_on light.garden",
        "20:00:00 call light.turn_on light.garden",
    ]
    bell = [
        SetState(start + timedelta(hours=h), f"b{h}", "binary_sensor.doorbell", s, {})
        for h, s in ((8, "on"), (8.25, "off"), (9, "on"), (9.25, "off"), (14.75, "on"))
    ]
    played = run("sun.yaml", "daylight_doorbell", bell, start=start, initial=home(start))
    assert [line[:8] for line in played] == ["09:00:00"]  # 08:00 too early, 14:45 too late


def places() -> dict[str, EntityState]:
    """Two zones (HA's ``zone.*`` states) and where two persons are at the start."""
    before = T0 - timedelta(hours=1)

    def state(value: str, **attributes: JsonValue) -> EntityState:
        return EntityState(state=value, attributes=attributes, last_changed=before,
                           last_updated=before)  # fmt: skip

    return {
        "zone.home": state("0", latitude=52.3731, longitude=4.8922, radius=100.0),
        "zone.work": state("2", latitude=52.3383, longitude=4.8722, radius=150.0),
        "person.paulus": state(
            "Work", latitude=52.3385, longitude=4.8724, gps_accuracy=10, friendly_name="Paulus"
        ),
        "person.anne": state(
            "Work", latitude=52.3381, longitude=4.8720, gps_accuracy=20, friendly_name="Anne"
        ),
    }


def moves(minutes: float, entity_id: str, state: str, latitude: float, longitude: float,
          name: str) -> SetState:  # fmt: skip
    attributes: dict[str, JsonValue] = {"latitude": latitude, "longitude": longitude,
                                        "gps_accuracy": 10, "friendly_name": name}  # fmt: skip
    return SetState(at(minutes), f"{entity_id}@{minutes}", entity_id, state, attributes)


def test_zone_triggers_fire_on_entering_and_leaving_by_position() -> None:
    commute = [
        moves(1, "person.paulus", "not_home", 52.3500, 4.8800, "Paulus"),  # leaves work
        moves(20, "person.paulus", "not_home", 52.3745, 4.8937, "Paulus"),  # 186 m from home
        moves(22, "person.paulus", "home", 52.37345, 4.89195, "Paulus"),  # home: enters
        moves(30, "person.paulus", "home", 52.37320, 4.89230, "Paulus"),  # moves inside
    ]
    assert run("zone.yaml", "arrive_home", commute, initial=places()) == [
        "18:22:00 call light.turn_on light.hallway"
    ]
    assert run("zone.yaml", "leave_work", commute, initial=places()) == [
        '18:01:00 call notify.notify (no target) {"message": "Paulus left work"}'
    ]


def test_zone_conditions_want_everyone_in_one_of_the_zones() -> None:
    nine = T0.replace(hour=8, minute=59)
    assert run("zone.yaml", "everyone_home_or_at_work", [], start=nine,
               until=timedelta(minutes=2), initial=places()) == [
        "09:00:00 call climate.set_temperature climate.living_room {\"temperature\": 17}"
    ]  # fmt: skip
    away = places()
    away["person.anne"] = away["person.anne"].model_copy(
        update={"state": "not_home", "attributes": {"latitude": 52.36, "longitude": 4.90}}
    )
    assert run("zone.yaml", "everyone_home_or_at_work", [], start=nine,
               until=timedelta(minutes=2), initial=away) == []  # fmt: skip
    phone = {**places(), "device_tracker.paulus_phone": places()["person.paulus"]}
    pressed = [event(1, "garage_button")]
    assert run("zone.yaml", "garage_when_at_home", pressed, initial=phone) == []  # at work
    phone["device_tracker.paulus_phone"] = phone["device_tracker.paulus_phone"].model_copy(
        update={"attributes": {"latitude": 52.37345, "longitude": 4.89195, "gps_accuracy": 10}}
    )
    assert run("zone.yaml", "garage_when_at_home", pressed, initial=phone) == [
        "18:01:00 call cover.open_cover cover.garage"
    ]


def helpers(since: datetime, **values: str) -> dict[str, EntityState]:
    """``input_datetime`` and timestamp sensor states as HA reports them, set at ``since``."""
    before = since
    out: dict[str, EntityState] = {}
    for entity, value in values.items():
        entity_id = entity.replace("__", ".")
        attributes: dict[str, JsonValue] = (
            {"device_class": "timestamp"}
            if entity_id.startswith("sensor.")
            else {"has_date": len(value) > 8, "has_time": len(value) != 10}
        )
        out[entity_id] = EntityState(
            state=value, attributes=attributes, last_changed=before, last_updated=before
        )
    return out


def test_time_triggers_at_entities_fire_at_the_time_they_hold() -> None:
    morning = T0.replace(hour=6, minute=0)
    day = timedelta(hours=24)
    daily = helpers(morning, input_datetime__wake_up="06:45:00")
    assert run("time.yaml", "wake_up_at_the_helper", [], start=morning, until=2 * day,
               initial=daily) == [
        "06:45:00 call light.turn_on light.bedroom",
        "06:45:00 call light.turn_on light.bedroom",  # every day (the 20th and the 21st)
    ]  # fmt: skip
    phone = helpers(morning, sensor__phone_next_alarm="2026-11-20T06:30:00+00:00")
    assert run("time.yaml", "phone_alarm", [], start=morning, until=day, initial=phone) == [
        "06:30:00 call media_player.media_play media_player.bedroom"  # once
    ]
    assert run("time.yaml", "before_the_phone_alarm", [], start=morning, until=day,
               initial=phone) == [
        '06:25:00 call climate.set_temperature climate.bathroom {"temperature": 22}'
    ]  # fmt: skip
    # A new alarm time re-arms it; an alarm cleared (unknown) disarms it.
    new_alarm = SetState(at(5, morning), "a1", "sensor.phone_next_alarm",
                         "2026-11-20T06:50:00+00:00", {"device_class": "timestamp"})  # fmt: skip
    cleared = SetState(at(30, morning), "a2", "sensor.phone_next_alarm", "unknown",
                       {"device_class": "timestamp"})  # fmt: skip
    assert run("time.yaml", "before_the_phone_alarm", [new_alarm], start=morning, until=day,
               initial=phone) == [
        '06:45:00 call climate.set_temperature climate.bathroom {"temperature": 22}'
    ]  # fmt: skip
    assert run("time.yaml", "before_the_phone_alarm", [new_alarm, cleared], start=morning,
               until=day, initial=phone) == []  # fmt: skip
    mixed = helpers(T0, input_datetime__porch_on="2026-11-20 17:30:00")
    assert run("time.yaml", "lights_at_times_and_helpers", [], start=T0.replace(hour=17),
               until=timedelta(hours=2), initial=mixed) == [
        "17:30:00 call light.turn_on light.porch",
        "18:00:00 call light.turn_on light.porch",
    ]  # fmt: skip
