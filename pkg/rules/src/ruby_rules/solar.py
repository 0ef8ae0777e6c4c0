"""Sunrise and sunset at the home's location: NOAA's solar equations, no dependency (ADR-0033).

Home Assistant computes its ``sun`` trigger and condition with astral (NOAA's equations too)
at the location it is configured with, which it publishes as the attributes ``latitude`` and
``longitude`` of ``zone.home``. These functions read that entity and compute the same instants:
within a minute of published tables and of astral (up to ~70 s at 64° N around midsummer,
where astral stops iterating earlier). The observer is at sea level; an elevation configured in
HA makes its sunrise a little earlier (about a minute per 300 m).

Pure functions of their arguments; a day with no sunrise or sunset (polar day or night) has
none (``None``), never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal, TypeAlias

from ruby_rules.context import States
from ruby_rules.geo import finite_number

SunEvent: TypeAlias = Literal["sunrise", "sunset"]
"""Which crossing of the horizon."""

HOME: Final = "zone.home"
"""The entity whose ``latitude``/``longitude`` attributes are the home's location."""
SUN: Final = "sun.sun"
"""HA's own sun entity, when loaded: its ``next_rising``/``next_setting`` calibrate ours."""
_NEXT: Final[dict[SunEvent, str]] = {"sunrise": "next_rising", "sunset": "next_setting"}
_MAX_CORRECTION: Final = timedelta(minutes=15)
"""A larger gap to HA's time is not an observer's elevation: it is ignored."""
_ZENITH: Final = 90.833
"""The sun's centre at sunrise: the horizon, plus refraction (34') and its radius (16')."""
_SEARCH_DAYS: Final = 367
"""How far ahead the next event is looked for, as Home Assistant does (a polar night ends)."""


@dataclass(frozen=True, slots=True)
class Place:
    """A location on Earth, in degrees (north and east positive)."""

    latitude: float
    longitude: float


def home(states: States) -> Place | None:
    """The home's location, from ``zone.home``'s attributes; None if unknown or not numbers."""
    state = states.get(HOME)
    if state is None:
        return None
    latitude = finite_number(state.attributes.get("latitude"))
    longitude = finite_number(state.attributes.get("longitude"))
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return Place(latitude, longitude)


def sun_event(place: Place, event: SunEvent, day: date) -> datetime | None:
    """The sunrise or sunset of ``day`` at ``place`` (aware UTC), or None if the sun does not
    cross the horizon that day. ``day`` counts as Home Assistant counts it: the event nearest
    the solar noon of that date at ``place``."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    latitude = math.radians(max(-89.8, min(89.8, place.latitude)))
    minutes = 720.0 - 4.0 * place.longitude  # solar noon, to start from
    for _ in range(3):  # each pass recomputes the sun's position at the previous estimate
        declination, equation_of_time = _sun_at(midnight + timedelta(minutes=minutes))
        cos_hour = (
            math.cos(math.radians(_ZENITH)) - math.sin(latitude) * math.sin(declination)
        ) / (math.cos(latitude) * math.cos(declination))
        if not -1.0 <= cos_hour <= 1.0:
            return None  # always above or always below the horizon
        hour_angle = math.degrees(math.acos(cos_hour))
        if event == "sunset":
            hour_angle = -hour_angle
        minutes = 720.0 - 4.0 * (place.longitude + hour_angle) - equation_of_time
    return midnight + timedelta(minutes=minutes)


def next_sun_event(
    place: Place, event: SunEvent, after: datetime, offset: timedelta = timedelta(0)
) -> datetime | None:
    """The first ``event + offset`` strictly after ``after``, or None if there is none within a
    year. Days are counted from the day before ``after``'s local date (its timezone), so that
    a negative offset whose instant today is already past gives tomorrow's, and a positive one
    that reaches past midnight still gives yesterday's event when it is not yet past."""
    first = after.date() - timedelta(days=1)
    for shift in range(_SEARCH_DAYS + 1):
        instant = sun_event(place, event, first + timedelta(days=shift))
        if instant is not None and instant + offset > after:
            return instant + offset
    return None


def correction(place: Place, event: SunEvent, states: States) -> timedelta:
    """How far Home Assistant's own time for ``event`` (``sun.sun``'s ``next_rising`` or
    ``next_setting``) is from ours, for the same day: mostly the observer's elevation, which
    ``zone.home`` does not publish (10 m makes a sunrise about a minute earlier in HA). Zero
    without ``sun.sun``, or when the gap is over 15 minutes (not the same event)."""
    state = states.get(SUN)
    value = None if state is None else state.attributes.get(_NEXT[event])
    if not isinstance(value, str):
        return timedelta(0)
    try:
        theirs = datetime.fromisoformat(value)
    except ValueError:
        return timedelta(0)
    if theirs.tzinfo is None:
        return timedelta(0)
    ours = next_sun_event(place, event, theirs - _MAX_CORRECTION)
    gap = timedelta(0) if ours is None else theirs - ours
    return gap if abs(gap) <= _MAX_CORRECTION else timedelta(0)


def _sun_at(moment: datetime) -> tuple[float, float]:
    """The sun's declination (radians) and the equation of time (minutes) at ``moment``."""
    julian_day = moment.timestamp() / 86400.0 + 2440587.5
    t = (julian_day - 2451545.0) / 36525.0  # Julian centuries since J2000.0
    mean_longitude = math.radians((280.46646 + t * (36000.76983 + 0.0003032 * t)) % 360)
    anomaly = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        math.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + math.sin(3 * anomaly) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    apparent = math.radians(
        math.degrees(mean_longitude) + centre - 0.00569 - 0.00478 * math.sin(omega)
    )
    mean_obliquity = (
        23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    )
    obliquity = math.radians(mean_obliquity + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent))
    y = math.tan(obliquity / 2) ** 2
    equation = (
        y * math.sin(2 * mean_longitude)
        - 2 * eccentricity * math.sin(anomaly)
        + 4 * eccentricity * y * math.sin(anomaly) * math.cos(2 * mean_longitude)
        - 0.5 * y * y * math.sin(4 * mean_longitude)
        - 1.25 * eccentricity * eccentricity * math.sin(2 * anomaly)
    )
    return declination, 4.0 * math.degrees(equation)
