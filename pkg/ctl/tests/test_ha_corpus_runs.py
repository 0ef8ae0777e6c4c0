"""Automations of the HA corpus (rules/examples/ha), run as ``rubyctl rules test`` runs them:
each gives the calls Home Assistant would make, at the times it would make them. Every
automation of the corpus that loads is run here (the last test checks it)."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import JsonValue

from ruby_ctl.rules_sim import BusEvent, Happening, SetState, SimEvent, Simulation, from_envelope
from ruby_rules import load_file
from ruby_rules.model import Rule
from ruby_schemas.envelope import make_envelope
from ruby_schemas.ha_events import EntityState
from ruby_schemas.webhooks import WebhookCalledV1

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


def rule_of(file: str, rule_id: str) -> Rule:
    """The automation ``rule_id`` of the corpus file ``file``, loaded."""
    loaded = load_file(CORPUS / file, name=file)
    rules = [rule for rule in loaded.rules if rule.id == rule_id]
    assert rules, f"{rule_id} does not load from {file}"
    return rules[0]


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
    sim = Simulation([rule_of(file, rule_id)], start=start, tz=UTC, states=initial)
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


# --- every other automation of the corpus that loads, with the result HA gives ----------------


def test_stop_ends_the_run_before_the_call_when_nobody_is_home() -> None:
    evening = T0.replace(hour=17, minute=59)

    def at_six(person: str, what: str = "call") -> list[str]:
        initial = states(person__paulus=person)
        return run("choose_if.yaml", "stop_when_away", [], start=evening,
                   until=timedelta(minutes=2), initial=initial, what=what)  # fmt: skip

    assert at_six("not_home") == []
    [ended] = at_six("not_home", "run")
    assert "stopped: Nobody is home" in ended
    assert at_six("home") == ["18:00:00 call light.turn_on light.living_room"]


def test_a_state_condition_lets_the_run_through_only_in_its_state() -> None:
    motion = [set_state(1, "binary_sensor.kitchen_motion", "on")]
    for alarm, calls in (("disarmed", ["18:01:00 call light.turn_on light.kitchen"]),
                         ("armed_away", [])):  # fmt: skip
        initial = states(alarm_control_panel__home=alarm, binary_sensor__kitchen_motion="off")
        assert run("conditions.yaml", "state_condition", motion, initial=initial) == calls


def test_a_state_condition_with_for_holds_from_ten_minutes_after_the_change() -> None:
    opened = [set_state(0, "binary_sensor.bedroom_window", "on")]
    fired = run("conditions.yaml", "state_condition_for", opened, until=timedelta(minutes=12))
    # HA: the state must have lasted 10 minutes when the minute pattern fires: 18:10 on.
    assert fired == [f"18:{m}:00 call climate.turn_off climate.bedroom" for m in (10, 11, 12)]
    closed = [*opened, set_state(9, "binary_sensor.bedroom_window", "off")]
    assert run("conditions.yaml", "state_condition_for", closed) == []


def test_a_numeric_state_condition_in_the_old_spelling() -> None:
    motion = [set_state(1, "binary_sensor.living_room_motion", "on")]
    dark = states(sensor__living_room_illuminance="10")
    bright = states(sensor__living_room_illuminance="20")  # below 20 is strict, as in HA
    assert run("conditions.yaml", "numeric_condition", motion, initial=dark) == [
        "18:01:00 call light.turn_on light.living_room_lamp"
    ]
    assert run("conditions.yaml", "numeric_condition", motion, initial=bright) == []


def test_a_time_condition_with_weekdays_skips_the_weekend() -> None:
    friday = T0.replace(hour=6, minute=40)  # Friday 20 November 2026
    days = timedelta(days=3, minutes=10)  # to Monday 06:50
    fired = run("conditions.yaml", "time_condition_weekdays", [], start=friday, until=days)
    # Friday and Monday; the trigger fires on Saturday and Sunday too, the condition stops it.
    assert fired == ["06:45:00 call switch.turn_on switch.coffee_maker"] * 2
    runs = run(
        "conditions.yaml",
        "time_condition_weekdays",
        [],
        start=friday,
        until=days,
        what="run",
    )
    assert len(runs) == 4


def test_and_or_not_nest_as_in_ha() -> None:
    door = [set_state(1, "binary_sensor.front_door", "on")]
    siren = ["18:01:00 call siren.turn_on siren.hallway"]
    cases = [
        (dict(person__paulus="not_home", alarm_control_panel__home="armed_away",
              input_boolean__vacation="off"), siren),
        (dict(person__paulus="not_home", alarm_control_panel__home="disarmed",
              input_boolean__vacation="on"), siren),
        (dict(person__paulus="not_home", alarm_control_panel__home="disarmed",
              input_boolean__vacation="off"), []),
        (dict(person__paulus="home", alarm_control_panel__home="armed_away",
              input_boolean__vacation="on"), []),
    ]  # fmt: skip
    for values, calls in cases:
        assert run("conditions.yaml", "or_and_not", door, initial=states(**values)) == calls


def test_the_or_and_not_shorthands_and_a_template_inside_them() -> None:
    ring = [set_state(1, "binary_sensor.doorbell", "on")]
    pause = ["18:01:00 call media_player.media_pause media_player.living_room"]
    cases = [
        (dict(media_player__living_room="playing", input_boolean__movie_mode="off",
              input_boolean__do_not_disturb="off"), pause),
        (dict(media_player__living_room="idle", input_boolean__movie_mode="on",
              input_boolean__do_not_disturb="off"), pause),
        (dict(media_player__living_room="idle", input_boolean__movie_mode="off",
              input_boolean__do_not_disturb="off"), []),
        (dict(media_player__living_room="playing", input_boolean__movie_mode="on",
              input_boolean__do_not_disturb="on"), []),
    ]  # fmt: skip
    for values, calls in cases:
        assert run("conditions.yaml", "shorthand_or", ring, initial=states(**values)) == calls


def test_delays_as_a_mapping_and_in_milliseconds() -> None:
    fan = [set_state(1, "switch.bathroom_fan", "on")]
    assert run("delays.yaml", "delay_mapping", fan) == [
        "18:21:00 call switch.turn_off switch.bathroom_fan"
    ]
    sim = Simulation([rule_of("delays.yaml", "delay_milliseconds")], start=T0, tz=UTC)
    happened = sim.handle(event(1, "flash_request"))
    happened += sim.advance(at(2))
    calls = [(h.time, h.text) for h in happened if h.what == "call"]
    assert calls == [
        (at(1), "call light.turn_on light.desk"),
        (at(1) + timedelta(milliseconds=500), "call light.turn_off light.desk"),
    ]


def test_a_custom_event_in_the_old_spelling() -> None:
    assert run("event.yaml", "custom_event", [event(1, "MY_CUSTOM_EVENT")]) == [
        "18:01:00 call scene.turn_on scene.movie_night"
    ]
    assert run("event.yaml", "custom_event", [event(1, "my_custom_event")]) == []


def test_a_package_file_automation_at_midnight_targets_an_area() -> None:
    late = T0.replace(hour=23, minute=59)
    assert run("homeassistant.yaml", "nightly_off", [], start=late, until=timedelta(minutes=2)) == [
        '00:00:00 call light.turn_off {"area_id": ["living_room"]}'
    ]


def test_queued_mode_plays_every_chime_in_turn_and_parallel_mode_renders_each_trigger() -> None:
    rings = [
        set_state(1, "binary_sensor.doorbell", "on"),
        set_state(1.1, "binary_sensor.doorbell", "off"),
        set_state(1.2, "binary_sensor.doorbell", "on"),
    ]
    chime = (
        'call media_player.play_media media_player.kitchen {"media_content_id": "chime.mp3", '
        '"media_content_type": "music"}'
    )
    assert run("modes.yaml", "queued_mode", rings) == [f"18:01:00 {chime}", f"18:01:12 {chime}"]
    motion = [
        set_state(1, "binary_sensor.garden_motion", "on"),
        set_state(1, "binary_sensor.driveway_motion", "on"),
    ]
    assert run("modes.yaml", "parallel_mode", motion) == [
        '18:01:00 call notify.notify (no target) {"message": "Motion at '
        'binary_sensor.garden_motion"}',
        '18:01:00 call notify.notify (no target) {"message": "Motion at '
        'binary_sensor.driveway_motion"}',
    ]


def test_a_numeric_band_on_an_attribute_fires_on_entering_it() -> None:
    before = T0 - timedelta(hours=1)
    dry = EntityState(
        state="heat", attributes={"current_humidity": 55}, last_changed=before, last_updated=before
    )
    humidity = [
        set_state(1, "climate.bathroom", "heat", current_humidity=70),  # enters: fires
        set_state(2, "climate.bathroom", "heat", current_humidity=75),  # stays in: no
        set_state(3, "climate.bathroom", "heat", current_humidity=85),  # leaves above: no
        set_state(4, "climate.bathroom", "heat", current_humidity=79),  # enters again: fires
    ]
    assert run(
        "numeric_state.yaml", "humidity_comfort_band", humidity, initial={"climate.bathroom": dry}
    ) == [
        "18:01:00 call switch.turn_on switch.dehumidifier",
        "18:04:00 call switch.turn_on switch.dehumidifier",
    ]


def test_calls_with_several_targets_data_and_areas() -> None:
    reading = [set_state(1, "input_boolean.reading", "on")]
    assert run("services.yaml", "call_with_target_and_data", reading) == [
        "18:01:00 call light.turn_on light.reading_lamp,light.sofa "
        '{"brightness_pct": 60, "color_temp_kelvin": 2700}'
    ]
    late = T0.replace(hour=23, minute=29)
    assert run("services.yaml", "call_an_area", [], start=late, until=timedelta(minutes=2)) == [
        '23:30:00 call light.turn_off {"area_id": ["living_room"]}'
    ]
    hallway = [set_state(1, "binary_sensor.hallway_motion", "on")]
    assert run("services.yaml", "disabled_action", hallway) == [
        "18:01:00 call light.turn_on light.hallway"  # the disabled notify is left out
    ]


def test_state_triggers_on_a_list_on_any_state_change_and_a_long_for() -> None:
    window = [set_state(1, "binary_sensor.bedroom_window", "on")]
    assert run("state_triggers.yaml", "any_window_opens", window) == [
        "18:01:00 call climate.turn_off climate.living_room"
    ]
    media = [
        set_state(1, "media_player.living_room", "playing"),
        set_state(2, "media_player.living_room", "playing", volume_level=0.4),  # attribute only
        set_state(3, "media_player.living_room", "paused"),
    ]
    initial = states(media_player__living_room="idle")
    assert run("state_triggers.yaml", "media_player_state_changes", media, initial=initial) == [
        "18:01:00 call light.toggle light.tv_backlight",
        "18:03:00 call light.toggle light.tv_backlight",
    ]
    docked = [set_state(0, "vacuum.downstairs", "docked")]
    assert run(
        "state_triggers.yaml", "vacuum_done_in_an_hour_and_ten", docked, until=timedelta(hours=2)
    ) == ["19:10:00 call vacuum.start vacuum.upstairs"]
    garage = [set_state(1, "binary_sensor.garage_motion", "on")]
    assert run("state_triggers.yaml", "old_spelling_motion", garage) == [
        "18:01:00 call light.turn_on light.garage"
    ]


def test_a_template_condition_reads_the_states() -> None:
    motion = [set_state(1, "binary_sensor.living_room_motion", "on")]
    for guests, calls in (("off", ["18:01:00 call light.turn_on light.living_room"]),
                          ("on", [])):  # fmt: skip
        initial = states(input_boolean__guest_mode=guests)
        assert run("template.yaml", "template_condition", motion, initial=initial) == calls


def test_times_in_a_list_and_time_patterns_on_the_hour() -> None:
    morning = T0.replace(hour=7, minute=0)
    assert run("time.yaml", "twice_a_day", [], start=morning, until=timedelta(hours=13)) == [
        "07:30:00 call switch.turn_on switch.garden_valve",
        "19:30:00 call switch.turn_on switch.garden_valve",
    ]
    assert run("time_pattern.yaml", "five_past_every_hour", [], until=timedelta(hours=2)) == [
        "18:05:00 call switch.toggle switch.aquarium_pump",
        "19:05:00 call switch.toggle switch.aquarium_pump",
    ]
    assert run(
        "time_pattern.yaml", "every_two_hours", [], start=at(1), until=timedelta(hours=4)
    ) == [
        "20:00:00 call button.press button.air_purifier_boost",
        "22:00:00 call button.press button.air_purifier_boost",
    ]


def test_trigger_variables_are_read_by_the_actions() -> None:
    motion = [set_state(1, "binary_sensor.hall_motion", "on")]
    assert run("variables.yaml", "trigger_variables", motion) == [
        '18:01:00 call notify.notify (no target) {"message": "Motion on binary_sensor.hall_motion"}'
    ]


def test_waits_without_a_timeout_wait_as_long_as_it_takes() -> None:
    washer = [
        set_state(0, "switch.washer", "on"),
        set_state(95, "sensor.washer_status", "running"),
        set_state(130, "sensor.washer_status", "done"),
    ]
    assert run("wait.yaml", "wait_forever", washer, until=timedelta(days=30)) == [
        '20:10:00 call notify.notify (no target) {"message": "The washer is done"}'
    ]
    running = states(sensor__dishwasher_status="running")
    dishwasher = [
        set_state(0, "switch.dishwasher", "on"),
        set_state(24 * 60 + 15, "sensor.dishwasher_status", "done"),  # the next day
    ]
    assert run("wait.yaml", "wait_template_forever", dishwasher, initial=running) == [
        '18:15:00 call notify.notify (no target) {"message": "The dishes are clean"}'
    ]
    # Still waiting after 30 days: nothing is sent, the run is not over.
    assert run("wait.yaml", "wait_template_forever", dishwasher[:1], initial=running,
               until=timedelta(days=30)) == []  # fmt: skip


def test_a_state_trigger_with_only_its_entity_fires_on_attribute_changes_too() -> None:
    sun = [
        set_state(1, "sun.sun", "above_horizon", elevation=10.5),
        set_state(2, "sun.sun", "above_horizon", elevation=10.5),  # nothing changed: no event
        set_state(3, "sun.sun", "above_horizon", elevation=9.8),  # an attribute: fires
        set_state(4, "sun.sun", "below_horizon", elevation=-0.5),  # the state: fires
    ]
    message = 'call notify.notify (no target) {"message": "The sun changed"}'
    assert run("state_triggers.yaml", "any_change_of_the_sun", sun) == [
        f"18:0{minute}:00 {message}" for minute in (1, 3, 4)
    ]


def _runs_in_this_module() -> set[tuple[str, str]]:
    """The (file, automation id) pairs this module's `run`/`rule_of` calls and tuples name."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(Path(__file__).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in {"run", "rule_of"}:
            items = node.args
        elif isinstance(node, ast.Tuple):
            items = node.elts
        else:
            continue
        words = [item.value for item in items[:2] if isinstance(item, ast.Constant)]
        if len(words) == 2 and all(isinstance(word, str) for word in words):
            found.add((str(words[0]), str(words[1])))
    return found


def test_every_automation_of_the_corpus_that_loads_is_run_here() -> None:
    loading = {
        (path.name, rule.id)
        for path in sorted(CORPUS.glob("*.yaml"))
        for rule in load_file(path, name=path.name).rules
    }
    assert len(loading) >= 45
    assert sorted(loading - _runs_in_this_module()) == []


def test_not_from_ignores_a_sensor_coming_back_from_unavailable() -> None:
    events = [
        set_state(1, "sensor.outdoor_temperature", "unavailable"),
        set_state(2, "sensor.outdoor_temperature", "7.5"),  # from unavailable: not fired
        set_state(3, "sensor.outdoor_temperature", "8"),
    ]
    initial = states(sensor__outdoor_temperature="7")
    assert run("state_triggers.yaml", "sensor_back_from_unavailable", events, initial=initial) == [
        '18:01:00 call notify.notify (no target) {"message": "The outdoor temperature changed"}',
        '18:03:00 call notify.notify (no target) {"message": "The outdoor temperature changed"}',
    ]


def held(state: str, attributes: dict[str, JsonValue]) -> EntityState:
    """A state with attributes, held since an hour before T0."""
    before = T0 - timedelta(hours=1)
    return EntityState(state=state, attributes=attributes, last_changed=before, last_updated=before)


def test_numeric_state_by_template_and_against_a_slider_as_ha_fires_them() -> None:
    battery = [
        set_state(1, "sensor.phone", "home", battery=35),
        set_state(2, "sensor.phone", "home", battery=19),  # crosses below 20
        set_state(3, "sensor.phone", "home", battery=15),  # still below: no new crossing
    ]
    assert run("numeric_state.yaml", "battery_low_by_template", battery) == [
        '18:02:00 call notify.notify (no target) {"message": "Charge the phone"}'
    ]
    slider = [
        set_state(1, "input_number.comfort_max", "22"),  # the bound alone fires nothing
        set_state(2, "sensor.living_room_temperature", "22.5"),  # was 21 < 22: crosses
        set_state(3, "sensor.living_room_temperature", "21"),
        set_state(4, "input_number.comfort_max", "unavailable"),
        set_state(5, "sensor.living_room_temperature", "30"),  # no usable bound: no fire
    ]
    initial = states(sensor__living_room_temperature="21", input_number__comfort_max="25")
    assert run("numeric_state.yaml", "hotter_than_the_slider", slider, initial=initial) == [
        "18:02:00 call fan.turn_on fan.living_room"
    ]


def test_an_event_trigger_on_two_types_fires_on_either() -> None:
    events = [event(1, "scene_reloaded"), event(2, "zha_event"), event(3, "automation_reloaded")]
    assert [line[:8] for line in run("event.yaml", "two_event_types", events)] == [
        "18:01:00",
        "18:03:00",
    ]


def test_trigger_conditions_pick_by_the_trigger_that_fired() -> None:
    paulus = [set_state(1, "person.paulus", "home"), set_state(2, "person.paulus", "work")]
    assert run("conditions.yaml", "trigger_condition", paulus) == [
        "18:01:00 call light.turn_on light.hallway"  # 'leaving' fired at 18:02: no call
    ]
    stairs = [
        set_state(0, "binary_sensor.stairs_motion", "on"),
        set_state(1, "binary_sensor.stairs_motion", "off"),
    ]
    assert run("choose_if.yaml", "choose_by_trigger_id", stairs) == [
        "18:00:00 call light.turn_on light.stairs",
        "18:03:00 call light.turn_off light.stairs",
    ]


def test_state_conditions_match_any_and_by_attribute() -> None:
    quarter = T0.replace(minute=9)
    check: tuple[str, str, list[SimEvent]] = ("conditions.yaml", "state_match_any", [])
    one_open = states(binary_sensor__front_door="off", binary_sensor__back_door="on")
    closed = states(binary_sensor__front_door="off", binary_sensor__back_door="off")
    assert len(run(*check, start=quarter, until=timedelta(minutes=2), initial=one_open)) == 1
    assert run(*check, start=quarter, until=timedelta(minutes=2), initial=closed) == []
    hot = [set_state(1, "sensor.living_room_temperature", "27")]
    for action, expected in (
        ("cooling", ["18:01:00 call fan.turn_on fan.living_room"]),
        ("heating", []),
    ):
        climate = held("cool", {"hvac_action": action})
        initial = {
            **states(sensor__living_room_temperature="24"),
            "climate.living_room": climate,
        }
        assert run("conditions.yaml", "state_attribute_condition", hot, initial=initial) == (
            expected
        )


def test_numeric_conditions_against_sliders_and_by_template() -> None:
    quarter = T0.replace(minute=14)
    band = {
        "input_number__temperature_threshold_low": "19",
        "input_number__temperature_threshold_high": "23",
    }
    step: tuple[str, str, list[SimEvent]] = (
        "conditions.yaml",
        "numeric_condition_entity_bounds",
        [],
    )
    cold = states(sensor__living_room_temperature="17", **band)
    comfy = states(sensor__living_room_temperature="21", **band)
    assert run(*step, start=quarter, until=timedelta(minutes=2), initial=cold) == [
        "18:15:00 call climate.turn_on climate.living_room"
    ]
    assert run(*step, start=quarter, until=timedelta(minutes=2), initial=comfy) == []
    door = [set_state(1, "binary_sensor.front_door", "on")]
    for inside, calls in ((30, 1), (36, 0)):  # 30 - 10 < 25 holds; 36 - 10 does not
        climate = held("heat", {"current_temperature": inside})
        initial = {"climate.living_room": climate}
        found = run("conditions.yaml", "numeric_condition_value_template", door, initial=initial)
        assert len(found) == calls, found


def test_time_conditions_bounded_by_helpers_and_a_timestamp_sensor() -> None:
    silent = {
        "input_datetime.house_silent_hours_start": (22, "22:00:00"),
        "input_datetime.house_silent_hours_end": (7, "07:00:00"),
    }
    helpers = {
        entity: held(text, {"hour": hour, "minute": 0, "second": 0})
        for entity, (hour, text) in silent.items()
    }
    late = T0.replace(hour=23)
    ring = [SetState(late, "late", "binary_sensor.doorbell", "on")]
    assert (
        len(run("conditions.yaml", "time_condition_helpers", ring, start=late, initial=helpers))
        == 1
    )
    evening = [set_state(1, "binary_sensor.doorbell", "on")]  # 18:01: not silent hours
    assert run("conditions.yaml", "time_condition_helpers", evening, initial=helpers) == []
    alarm = held("2026-11-20T06:30:00+00:00", {"device_class": "timestamp"})
    initial = {"sensor.phone_next_alarm": alarm}
    for hour, expected in ((6, 0), (7, 1)):  # before the alarm, then after it
        when = T0.replace(hour=hour)
        motion = [SetState(when, f"m{hour}", "binary_sensor.bedroom_motion", "on")]
        found = run(
            "conditions.yaml",
            "time_condition_timestamp_sensor",
            motion,
            start=when,
            initial=initial,
        )
        assert len(found) == expected, (hour, found)


def test_the_template_shorthand_holds_inside_and_not_and_if() -> None:
    motion = [set_state(1, "binary_sensor.garage_motion", "on")]
    dark = states(sensor__garage_illuminance="10", input_boolean__garage_party="off")
    party = states(sensor__garage_illuminance="10", input_boolean__garage_party="on")
    assert run("conditions.yaml", "template_shorthand_everywhere", motion, initial=dark) == [
        "18:01:00 call light.turn_on light.garage"
    ]
    assert run("conditions.yaml", "template_shorthand_everywhere", motion, initial=party) == []
    late = T0.replace(hour=22, minute=30)
    late_motion = [SetState(late, "late", "binary_sensor.garage_motion", "on")]
    assert run(
        "conditions.yaml", "template_shorthand_everywhere", late_motion, start=late, initial=dark
    ) == ['22:30:00 call light.turn_on light.garage {"brightness_pct": 20}']


def test_a_template_trigger_fires_when_its_template_turns_true_and_holds_its_for() -> None:
    low = states(sensor__power_usage="2000")
    high = [
        set_state(1, "sensor.power_usage", "3500"),
        set_state(1.5, "sensor.power_usage", "3600"),
    ]
    assert run("template.yaml", "power_above_by_template", high, initial=low) == [
        '18:02:00 call notify.notify (no target) {"message": "High power use"}'
    ]
    dipped = [*high, set_state(1.8, "sensor.power_usage", "2500")]
    assert run("template.yaml", "power_above_by_template", dipped, initial=low) == []
    away = states(device_tracker__paulus="not_home")
    home = [set_state(1, "device_tracker.paulus", "home")]
    assert run("template.yaml", "paulus_home_by_template", home, initial=away) == [
        "18:02:00 call light.turn_on light.hallway"  # for: {minutes: 1}
    ]


def test_a_template_trigger_over_several_entities_gives_the_change_that_made_it_true() -> None:
    shut = states(binary_sensor__front_door="off", binary_sensor__back_door="off")
    opened = [
        set_state(1, "binary_sensor.back_door", "on"),
        set_state(2, "binary_sensor.front_door", "on"),  # still true: no new edge
        set_state(3, "binary_sensor.back_door", "off"),
        set_state(3.5, "binary_sensor.front_door", "off"),
        set_state(4, "binary_sensor.front_door", "on"),
    ]
    assert run("template.yaml", "any_door_open_by_template", opened, initial=shut) == [
        '18:01:00 call notify.notify (no target) {"message": "binary_sensor.back_door opened"}',
        '18:04:00 call notify.notify (no target) {"message": "binary_sensor.front_door opened"}',
    ]
    two_on = states(light__a="on", light__b="on", light__c="off", switch__d="off")
    lights = [set_state(1, "switch.d", "on"), set_state(2, "light.c", "on")]
    assert run("template.yaml", "lights_left_on_by_template", lights, initial=two_on) == [
        '18:02:00 call notify.notify (no target) {"message": "Three lights are on"}'
    ]


def test_wait_template_goes_on_when_true_and_stops_on_timeout() -> None:
    opened = [
        set_state(0, "binary_sensor.entrance", "off"),
        set_state(1, "binary_sensor.entrance", "on"),
    ]
    closed = [*opened, set_state(1.5, "binary_sensor.entrance", "off")]
    assert run("wait.yaml", "wait_template_door_closed", closed) == [
        "18:01:00 call light.turn_on light.entrance",
        "18:01:30 call light.turn_off light.entrance",
    ]
    assert run("wait.yaml", "wait_template_door_closed", opened) == [
        "18:01:00 call light.turn_on light.entrance"  # continue_on_timeout: false
    ]
    [*_, stopped] = run("wait.yaml", "wait_template_door_closed", opened, what="run")
    assert "stopped" in stopped
    late = T0.replace(hour=23, minute=29)
    tv_on = states(media_player__tv="on")
    tv_off = [SetState(late.replace(minute=45), "tv", "media_player.tv", "off")]
    assert run("wait.yaml", "wait_template", tv_off, start=late, initial=tv_on) == [
        "23:45:00 call light.turn_off light.living_room"
    ]
    tv_already_off = states(media_player__tv="off")
    at_once = run("wait.yaml", "wait_template", [], start=late, initial=tv_already_off)
    assert at_once == ["23:30:00 call light.turn_off light.living_room"]


def test_repeat_count_sends_one_call_per_iteration_with_its_index() -> None:
    assert run("repeat.yaml", "repeat_count_index", [event(1, "countdown")]) == [
        '18:01:00 call notify.notify (no target) {"message": "Beep 1 of 3"}',
        '18:01:30 call notify.notify (no target) {"message": "Beep 2 of 3"}',
        '18:02:00 call notify.notify (no target) {"message": "Beep 3 of 3 (last)"}',
    ]
    assert len(run("repeat.yaml", "repeat_count", [event(1, "find_my_keys")])) == 3


def test_repeat_while_until_and_for_each_stop_as_ha_does() -> None:
    fridge = [
        set_state(0, "binary_sensor.fridge_door", "on"),  # fires after 2 minutes open
        set_state(4.5, "binary_sensor.fridge_door", "off"),  # the while stops it
    ]
    assert run("repeat.yaml", "repeat_while", fridge) == [
        '18:02:00 call notify.notify (no target) {"message": "Close the fridge"}',
        '18:03:00 call notify.notify (no target) {"message": "Close the fridge"}',
        '18:04:00 call notify.notify (no target) {"message": "Close the fridge"}',
    ]
    night = T0.replace(hour=21, minute=59)
    closed_at = night + timedelta(minutes=1, seconds=15)
    garage = [SetState(night, "g1", "cover.garage", "open"),
              SetState(closed_at, "g2", "cover.garage", "closed")]  # fmt: skip
    assert run("repeat.yaml", "repeat_until", garage, start=night) == [
        "22:00:00 call cover.close_cover cover.garage",
        "22:00:10 call cover.close_cover cover.garage",  # closed at 22:00:15: no third
    ]
    rooms = run("repeat.yaml", "repeat_for_each", [event(1, "announce")])
    assert [line.split('"media_player_entity_id": ')[1][:26] for line in rooms] == [
        '"media_player.kitchen", "m',
        '"media_player.living_room"',
    ]


def test_variables_feed_calls_as_ha_renders_them() -> None:
    motion = [set_state(1, "binary_sensor.kitchen_motion", "on")]
    assert run("variables.yaml", "automation_variables", motion) == [
        "18:01:00 call light.turn_on light.kitchen"
    ]
    cold = [set_state(1, "sensor.outdoor_temperature", "3.5")]
    assert run("variables.yaml", "variables_action", cold) == [
        '18:01:00 call notify.notify (no target) {"message": "Cold: True"}'
    ]


def test_parallel_sequence_templates_and_continue_on_error_run_every_call_once() -> None:
    ring = [set_state(1, "binary_sensor.doorbell", "on")]
    assert run("parallel.yaml", "parallel_actions", ring) == [
        '18:01:00 call notify.mobile_app_paulus (no target) {"message": "Doorbell"}',
        '18:01:00 call notify.mobile_app_anne (no target) {"message": "Doorbell"}',
    ]
    assert len(run("parallel.yaml", "sequence_action", [event(1, "goodnight")])) == 2
    timeout = states(input_number__hallway_timeout="4")
    passes = [set_state(1, "binary_sensor.hallway_motion", "off")]
    assert run("delays.yaml", "delay_template", passes, initial=timeout) == [
        "18:05:00 call light.turn_off light.hallway"
    ]
    fan = [set_state(1, "input_boolean.fan_wanted", "on")]
    assert run("services.yaml", "service_from_template", fan) == [
        '18:01:00 call switch.turn_on switch.fan {"source": "input_boolean.fan_wanted"}'
    ]
    night = T0.replace(hour=1, minute=59)
    assert run("services.yaml", "continue_on_error", [], start=night) == [
        "02:00:00 call switch.turn_off switch.flaky_plug",
        "02:00:00 call light.turn_off light.garden",
    ]


def test_the_event_action_fires_on_the_bus_with_its_data_merged_and_rendered() -> None:
    ring = [
        set_state(0, "binary_sensor.doorbell", "off"),
        set_state(1, "binary_sensor.doorbell", "on"),
    ]
    assert run("event.yaml", "fire_an_event", ring, what="fire_event") == [
        '18:01:00 fire_event doorbell_rang {"where": "front"}'
    ]
    press = [event(2, "zha_event", command="on", device_ieee="00:11")]
    assert run("event.yaml", "relay_a_button_press", press, what="fire_event") == [
        '18:02:00 fire_event custom.button_relayed {"source": "zha", "device": "00:11"}'
    ]


def test_home_assistant_start_and_shutdown_triggers_fire_on_the_gateways_announcements() -> None:
    # The gateway's ha.lifecycle.v1, as the engine (and `rubyctl rules test`) offers it.
    lifecycle = [event(0, "homeassistant.start"), event(5, "homeassistant.shutdown")]
    assert run("homeassistant.yaml", "on_start", lifecycle) == [
        '18:00:00 call notify.notify (no target) {"message": "Home Assistant is up"}'
    ]
    assert run("homeassistant.yaml", "on_shutdown", lifecycle) == [
        '18:05:00 call notify.notify (no target) {"message": "Home Assistant is stopping"}'
    ]
    bus = [event(0, "homeassistant_started"), event(1, "homeassistant_stop")]  # HA's own: not these
    assert run("homeassistant.yaml", "on_start", bus) == []


def webhook(minutes: float, webhook_id: str, body: JsonValue = None, **query: str) -> SimEvent:
    """A call of ``POST /api/v1/webhooks/<webhook_id>`` as EVENTS holds it (``api.webhook.v1``)
    and as `rubyctl rules test` reads a dumped envelope."""
    when = at(minutes)
    called = WebhookCalledV1(webhook_id=webhook_id, method="POST", body=body, query=query,
                             received=when, caller="phone")  # fmt: skip
    event = from_envelope(make_envelope(called, source="ruby/gateway/api", time=when))
    assert event is not None
    return event


def test_webhook_triggers_fire_on_calls_of_their_webhook_with_body_and_query() -> None:
    opened = [
        webhook(1, "garage-door-opened", {"open": True, "level": 90}),
        webhook(2, "garage-door-opened", {"open": False}),  # the condition reads the body
        webhook(3, "garage-door-closed", {"open": True}),  # another webhook
        webhook(4, "garage-door-opened", {"open": True}),
    ]
    assert run("webhook.yaml", "garage_from_phone", opened) == [
        '18:01:00 call light.turn_on light.garage {"brightness": 90}',
        '18:04:00 call light.turn_on light.garage {"brightness": 255}',
    ]
    rang = [webhook(1, "-Xc3KpL9vWq2", who="Anne"), webhook(2, "-Xc3KpL9vWq2")]
    assert run("webhook.yaml", "doorbell_camera", rang) == [
        '18:01:00 call notify.notify (no target) {"message": "Anne at the door"}',
        '18:02:00 call notify.notify (no target) {"message": "someone at the door"}',
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
