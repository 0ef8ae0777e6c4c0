"""The ``sun`` condition, with Home Assistant's semantics around midnight (``helpers/condition.py``
``sun()``): today's sunrise and sunset, the night across midnight, offsets, a bound on an event
that falls on yesterday's date, polar days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ruby_rules.processors.conditions.sun import SunCondition, SunConditionConfig
from ruby_schemas.ha_events import EntityState

T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
# Amsterdam on 2026-12-04: sunrise 07:31:52, sunset 15:29:06 UTC (astral, HA's: 07:32:14, 15:28:44)


def home(latitude: float = 52.37, longitude: float = 4.89) -> dict[str, EntityState]:
    attributes: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    return {"zone.home": EntityState(state="0", attributes=attributes, last_changed=T0,
                                     last_updated=T0)}  # fmt: skip


def holds(now: datetime, states: dict[str, EntityState] | None = None, /, **config: str) -> bool:
    condition = SunCondition(SunConditionConfig.model_validate({"kind": "sun", **config}))
    return condition.evaluate(home() if states is None else states, now)


def at(hours: float, base: datetime = T0) -> datetime:
    return base + timedelta(hours=hours)


@pytest.mark.parametrize(
    ("hour", "night", "day"),
    [(3, True, False), (7.5, True, False), (7.55, False, True), (12, False, True),
     (15.45, False, True), (15.5, True, False), (23.9, True, False)],
)  # fmt: skip
def test_the_night_spans_midnight_and_the_day_does_not(hour: float, night: bool, day: bool) -> None:
    assert holds(at(hour), after="sunset", before="sunrise") is night
    assert holds(at(hour), after="sunrise", before="sunset") is day


def test_offsets_move_each_bound() -> None:
    # after sunrise + 1h (08:31:52), before sunset - 1h (14:29:06)
    bounds = {"after": "sunrise", "after_offset": "01:00:00", "before": "sunset",
              "before_offset": "-01:00:00"}  # fmt: skip
    assert not holds(at(8.5), **bounds)
    assert holds(at(8.55), **bounds)
    assert holds(at(14.45), **bounds)
    assert not holds(at(14.5), **bounds)
    # the night, from 30 minutes before sunset to 30 minutes after sunrise
    evening = {"after": "sunset", "after_offset": "-00:30:00", "before": "sunrise",
               "before_offset": "+00:30:00"}  # fmt: skip
    assert holds(at(15), **evening)
    assert holds(at(8), **evening)
    assert not holds(at(8.1), **evening)


def test_one_bound_alone() -> None:
    assert holds(at(16), after="sunset")
    assert not holds(at(1), after="sunset")  # after today's sunset only: not after midnight
    assert holds(at(1), before="sunrise")
    assert not holds(at(16), before="sunrise")


def test_an_event_on_yesterdays_date_is_replaced_by_tomorrows() -> None:
    # HA's own test place: latitude 66.5, longitude 162.4 east, in Anchorage's timezone. The
    # sunrise of 2015-07-24 (as astral counts days) falls on the 23rd there: the condition uses
    # the next one, 2015-07-24 07:15:46 local.
    anchorage = ZoneInfo("America/Anchorage")
    place = home(66.5, 162.4)
    morning = datetime(2015, 7, 24, 7, 10, tzinfo=anchorage)
    assert not holds(morning, place, after="sunrise")
    assert holds(morning + timedelta(minutes=10), place, after="sunrise")
    assert holds(morning, place, before="sunrise")


def test_polar_night_has_no_sunrise_so_a_bound_on_it_does_not_hold() -> None:
    tromso = home(69.6492, 18.9553)
    noon = datetime(2026, 12, 15, 12, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    assert not holds(noon, tromso, after="sunrise")
    assert not holds(noon, tromso, before="sunrise")
    assert not holds(noon, tromso, after="sunset", before="sunrise")  # HA: not handled either


def test_without_a_home_location_it_fails_loudly() -> None:
    with pytest.raises(ValueError, match=r"zone\.home has no latitude"):
        holds(at(12), {}, after="sunset")


def test_it_needs_a_bound_and_reads_names_as_ha_does() -> None:
    with pytest.raises(ValueError, match="at least one of 'after', 'before'"):
        SunConditionConfig.model_validate({"kind": "sun", "after_offset": "01:00:00"})
    config = SunConditionConfig.model_validate({"kind": "sun", "after": "SunSet"})
    assert config.after == "sunset"


def test_has_own_sun_times_move_the_bounds() -> None:
    # sun.sun (HA at 100 m): sunset 15:31:48, where ours at sea level is 15:29:06.
    states = home()
    states["sun.sun"] = EntityState(
        state="above_horizon", attributes={"next_setting": "2026-12-04T15:31:48+00:00"},
        last_changed=T0, last_updated=T0,
    )  # fmt: skip
    assert holds(at(15.5), after="sunset")  # 15:30: after our sunset
    assert not holds(at(15.5), states, after="sunset")  # but before HA's
    assert holds(at(15.54), states, after="sunset")  # 15:32:24
