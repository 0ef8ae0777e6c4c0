"""The ``sun`` trigger: sunrise and sunset against published tables, offsets both ways, DST
days, polar days and nights, and the engine arming it as a durable ``at`` timer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ruby_rules import load_text
from ruby_rules.engine import Effects, RuleEngine, read_record
from ruby_rules.model import Rule
from ruby_rules.processors.triggers.sun import SunTrigger, SunTriggerConfig
from ruby_rules.solar import Place, correction, home, next_sun_event, sun_event
from ruby_schemas.ha_events import EntityState

LONDON = Place(51.5072, -0.1276)
NEW_YORK = Place(40.7128, -74.0060)
SYDNEY = Place(-33.8688, 151.2093)
BERLIN = Place(52.5200, 13.4050)
AMSTERDAM = Place(52.37, 4.89)  # the real-HA suite's home
TROMSO = Place(69.6492, 18.9553)


def local(place_tz: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(place_tz))


@pytest.mark.parametrize(
    ("place", "tz", "day", "sunrise", "sunset"),
    [
        # Published (timeanddate.com, US Naval Observatory), local times to the minute.
        (LONDON, "Europe/London", date(2024, 6, 21), "2024-06-21 04:43", "2024-06-21 21:21"),
        (LONDON, "Europe/London", date(2024, 12, 21), "2024-12-21 08:04", "2024-12-21 15:53"),
        (NEW_YORK, "America/New_York", date(2024, 6, 20), "2024-06-20 05:25", "2024-06-20 20:31"),
        (SYDNEY, "Australia/Sydney", date(2024, 12, 21), "2024-12-21 05:41", "2024-12-21 20:05"),
    ],
)
def test_sunrise_and_sunset_match_published_tables_within_a_minute(
    place: Place, tz: str, day: date, sunrise: str, sunset: str
) -> None:
    rise = sun_event(place, "sunrise", day)
    down = sun_event(place, "sunset", day)
    assert rise is not None
    assert down is not None
    assert abs(rise - local(tz, sunrise)) <= timedelta(minutes=1)
    assert abs(down - local(tz, sunset)) <= timedelta(minutes=1)


def test_a_dst_change_moves_the_local_clock_time_by_an_hour_not_the_instant() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # summer time began 2026-03-29 02:00 (CET -> CEST)
    before = sun_event(BERLIN, "sunrise", date(2026, 3, 28))
    after = sun_event(BERLIN, "sunrise", date(2026, 3, 29))
    assert before is not None
    assert after is not None
    assert before.astimezone(berlin).strftime("%H:%M") == "05:50"  # CET
    assert after.astimezone(berlin).strftime("%H:%M") == "06:48"  # CEST
    assert timedelta(hours=23, minutes=55) < after - before < timedelta(hours=23, minutes=59)
    # Counting from the evening before the change, in local time, gives the next morning's.
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=berlin)
    assert next_sun_event(BERLIN, "sunrise", evening) == after
    # The autumn change (2026-10-25 03:00 CEST -> 02:00 CET): a sunset + 1h still lands once.
    autumn = datetime(2026, 10, 25, 1, 30, tzinfo=berlin)
    sunset = sun_event(BERLIN, "sunset", date(2026, 10, 25))
    assert sunset is not None
    assert sunset.astimezone(berlin).strftime("%H:%M") == "16:50"
    assert next_sun_event(BERLIN, "sunset", autumn, timedelta(hours=1)) == sunset + timedelta(
        hours=1
    )


def test_offsets_either_way_and_a_negative_offset_already_past_today() -> None:
    day = date(2026, 12, 4)
    sunset = sun_event(AMSTERDAM, "sunset", day)
    tomorrow = sun_event(AMSTERDAM, "sunset", day + timedelta(days=1))
    assert sunset is not None
    assert tomorrow is not None
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert next_sun_event(AMSTERDAM, "sunset", noon) == sunset
    assert next_sun_event(AMSTERDAM, "sunset", noon, timedelta(minutes=30)) == sunset + timedelta(
        minutes=30
    )
    hour_before = -timedelta(hours=1)
    assert next_sun_event(AMSTERDAM, "sunset", noon, hour_before) == sunset + hour_before
    # Between sunset - 1h and sunset: today's instant is past, so it is tomorrow's.
    between = sunset - timedelta(minutes=30)
    assert next_sun_event(AMSTERDAM, "sunset", between, hour_before) == tomorrow + hour_before
    # Just after sunset, sunset + 30 min is still to come today.
    assert next_sun_event(
        AMSTERDAM, "sunset", sunset + timedelta(minutes=1), timedelta(minutes=30)
    ) == sunset + timedelta(minutes=30)
    # Strictly after: at the instant itself, the next one is tomorrow's.
    assert next_sun_event(AMSTERDAM, "sunset", sunset) == tomorrow


def test_a_large_positive_offset_past_midnight_still_gives_yesterdays_event() -> None:
    sunset = sun_event(AMSTERDAM, "sunset", date(2026, 12, 4))
    assert sunset is not None
    past_midnight = datetime(2026, 12, 5, 0, 30, tzinfo=UTC)
    assert next_sun_event(AMSTERDAM, "sunset", past_midnight, timedelta(hours=10)) == (
        sunset + timedelta(hours=10)
    )


def test_polar_night_and_day_have_no_event_and_the_next_one_comes_when_the_sun_returns() -> None:
    assert sun_event(TROMSO, "sunrise", date(2026, 12, 15)) is None  # polar night
    assert sun_event(TROMSO, "sunset", date(2026, 6, 21)) is None  # midnight sun
    oslo = ZoneInfo("Europe/Oslo")
    first = next_sun_event(TROMSO, "sunrise", datetime(2026, 12, 15, 12, 0, tzinfo=oslo))
    assert first is not None
    assert date(2027, 1, 14) <= first.astimezone(oslo).date() <= date(2027, 1, 17)
    # At the pole itself the sun crosses the horizon about once a year: found, not a crash.
    pole = Place(90.0, 0.0)
    assert next_sun_event(pole, "sunrise", datetime(2026, 12, 15, tzinfo=UTC)) is not None


def test_the_home_location_comes_from_zone_home_and_nothing_else() -> None:
    assert home({"zone.home": st("0", latitude=52.37, longitude=4.89)}) == AMSTERDAM
    assert home({}) is None
    assert home({"zone.home": st("0")}) is None
    assert home({"zone.home": st("0", latitude="52.37", longitude=4.89)}) is None
    assert home({"zone.home": st("0", latitude=True, longitude=4.89)}) is None
    assert home({"zone.home": st("0", latitude=91.0, longitude=4.89)}) is None


def test_the_config_reads_home_assistants_offsets_and_event_names() -> None:
    earlier = SunTriggerConfig.model_validate(
        {"kind": "sun", "event": "Sunset", "offset": "-01:00:00"}
    )
    assert (earlier.event, earlier.offset) == ("sunset", -timedelta(hours=1))
    later = SunTriggerConfig.model_validate({"kind": "sun", "event": "sunrise", "offset": "+30m"})
    assert later.offset == timedelta(minutes=30)
    assert SunTriggerConfig.model_validate({"kind": "sun", "event": "sunrise"}).offset == (
        timedelta(0)
    )
    dumped = earlier.model_dump(mode="json")
    assert SunTriggerConfig.model_validate(dumped) == earlier
    for bad in ({"event": "noon"}, {"event": "sunset", "offset": "-soon"}):
        with pytest.raises(ValueError, match=r"event|duration"):
            SunTriggerConfig.model_validate({"kind": "sun", **bad})


def test_without_a_location_the_trigger_has_no_instant() -> None:
    trigger = SunTrigger(SunTriggerConfig(kind="sun", event="sunset"))
    assert trigger.next_fire(datetime(2026, 12, 4, 12, tzinfo=UTC)) is None
    assert trigger.watch().entities == ("zone.home", "sun.sun")
    assert trigger.watch().timed


# --- in the engine ----------------------------------------------------------------------------

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RULES = """
rules:
  - id: porch
    description: the porch light an hour before sunset
    triggers:
      - {kind: sun, event: sunset, offset: "-01:00:00"}
    actions:
      - {kind: call, service: light.turn_on, target: {entity_id: light.porch}}
"""
KEY = "at.porch.0"


def st(state: str, at: datetime = T0, **attributes: Any) -> EntityState:
    return EntityState(state=state, attributes=attributes, last_changed=at, last_updated=at)


def rules() -> tuple[Rule, ...]:
    loaded = load_text(RULES, "sun.yaml")
    assert loaded.ok, loaded.errors
    return loaded.rules


def engine(now: datetime = T0, **zone: Any) -> RuleEngine:
    e = RuleEngine(tz=UTC)
    e.set_states({"zone.home": st("0", latitude=52.37, longitude=4.89, **zone)})
    e.set_rules(rules(), now)
    return e


def fire_due(e: RuleEngine, now: datetime) -> Effects:
    total = Effects()
    for key in e.due(now):
        total.extend(e.fire(key, now))
    return total


def test_the_engine_arms_fires_and_rearms_for_the_next_day() -> None:
    e = engine()
    sunset = sun_event(AMSTERDAM, "sunset", T0.date())
    tomorrow = sun_event(AMSTERDAM, "sunset", T0.date() + timedelta(days=1))
    assert sunset is not None
    assert tomorrow is not None
    due = sunset - timedelta(hours=1)
    assert e.timers[KEY].deadline == due
    assert fire_due(e, due - timedelta(seconds=1)).commands == []
    fired = fire_due(e, due)
    assert [f"{c.domain}.{c.service}" for c in fired.commands] == ["light.turn_on"]
    assert e.timers[KEY].deadline == tomorrow - timedelta(hours=1)


def test_a_new_home_location_rearms_it_and_no_location_disarms_it() -> None:
    e = engine()
    amsterdam = e.timers[KEY].deadline
    moved = e.on_state_changed(
        event_id="zone-1",
        entity_id="zone.home",
        old=e.states["zone.home"],
        new=st("0", T0 + timedelta(minutes=1), latitude=40.7128, longitude=-74.006),
        now=T0 + timedelta(minutes=1),
    )
    new_york = sun_event(NEW_YORK, "sunset", T0.date())
    assert new_york is not None
    assert moved.commands == []
    assert e.timers[KEY].deadline == new_york - timedelta(hours=1) != amsterdam
    gone = e.on_state_changed(
        event_id="zone-2",
        entity_id="zone.home",
        old=e.states["zone.home"],
        new=None,
        now=T0 + timedelta(minutes=2),
    )
    assert gone.timers == {KEY: None}
    assert KEY not in e.timers


def test_a_stored_sun_timer_restored_by_a_new_engine_fires_once_with_the_same_ids() -> None:
    first = engine()
    stored = [read_record(record.to_json()) for record in first.timers.values()]
    due = first.timers[KEY].deadline
    assert due is not None
    uninterrupted = fire_due(first, due)

    second = RuleEngine(tz=UTC)  # a restart, an hour before the instant
    second.set_states({"zone.home": st("0", latitude=52.37, longitude=4.89)})
    second.restore(stored)
    second.set_rules(rules(), due - timedelta(hours=1))
    resumed = fire_due(second, due + timedelta(seconds=3))
    assert len(resumed.commands) == 1
    assert [c.command_id for c in resumed.commands] == [
        c.command_id for c in uninterrupted.commands
    ]
    assert fire_due(second, due + timedelta(seconds=4)).commands == []  # once


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ('"-00:45:00"', -timedelta(minutes=45)),
        ('"-00:45"', -timedelta(minutes=45)),  # HH:MM
        ('"+00:30:00"', timedelta(minutes=30)),
        ('"01:00:00.5"', timedelta(hours=1, milliseconds=500)),
        ("-2700", -timedelta(minutes=45)),
        ("{minutes: -45}", -timedelta(minutes=45)),
        ("{hours: 1, minutes: 30}", timedelta(hours=1, minutes=30)),
    ],
)
def test_home_assistants_offset_forms_load(offset: str, expected: timedelta) -> None:
    text = (
        "- id: porch\n  triggers:\n    - trigger: sun\n      event: sunset\n"
        f"      offset: {offset}\n  actions:\n    - action: light.turn_on\n"
        "      target: {entity_id: light.porch}\n"
    )
    loaded = load_text(text, "automations.yaml")
    assert loaded.ok, [str(error) for error in loaded.errors]
    [rule] = loaded.rules
    config = rule.config.triggers[0]
    assert isinstance(config, SunTriggerConfig)
    assert config.offset == expected


def test_a_bad_offset_is_refused_at_its_line() -> None:
    text = (
        "- id: porch\n  triggers:\n    - trigger: sun\n      event: sunset\n"
        '      offset: "soon"\n  actions:\n    - action: light.turn_on\n'
    )
    [error] = load_text(text, "automations.yaml").errors
    assert str(error).startswith("automations.yaml:5:15: rule 'porch': triggers[0].offset: ")
    assert "expected an offset as Home Assistant writes it" in str(error)


def test_has_own_sun_times_calibrate_ours_for_the_elevation_it_knows() -> None:
    # HA at 52.37, 4.89 with an elevation of 100 m: sun.sun says sunrise 07:29:16 and sunset
    # 15:31:48 (astral), where sea-level NOAA gives 07:31:52 and 15:29:06.
    home_ = {"zone.home": st("0", latitude=52.37, longitude=4.89)}
    sun = st("below_horizon", next_rising="2026-12-04T07:29:16.515360+00:00",
             next_setting="2026-12-04T15:31:48.000000+00:00")  # fmt: skip
    states = {**home_, "sun.sun": sun}
    rise = sun_event(AMSTERDAM, "sunrise", T0.date())
    assert rise is not None
    assert (
        correction(AMSTERDAM, "sunrise", states)
        == datetime(2026, 12, 4, 7, 29, 16, 515360, tzinfo=UTC) - rise
    )
    assert correction(AMSTERDAM, "sunrise", home_) == timedelta(0)
    trigger = SunTrigger(SunTriggerConfig(kind="sun", event="sunrise", offset=timedelta(0)))
    night = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    assert trigger.next_fire(night, states) == datetime(2026, 12, 4, 7, 29, 16, 515360, tzinfo=UTC)
    # The next day's sunrise moves by the same amount (the elevation's effect barely changes).
    tomorrow = trigger.next_fire(datetime(2026, 12, 4, 8, 0, tzinfo=UTC), states)
    plain = next_sun_event(AMSTERDAM, "sunrise", datetime(2026, 12, 4, 8, 0, tzinfo=UTC))
    assert tomorrow is not None
    assert plain is not None
    assert tomorrow - plain == correction(AMSTERDAM, "sunrise", states)
    # Nonsense is ignored: another event's time, no timezone, not a time.
    for value in ("2026-12-04T11:30:00+00:00", "2026-12-04T07:29:16", "soon", 7):
        odd = {**home_, "sun.sun": st("below_horizon", next_rising=value)}
        assert correction(AMSTERDAM, "sunrise", odd) == timedelta(0), value
