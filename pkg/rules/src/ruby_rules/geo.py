"""Whether an entity is in a zone, as Home Assistant decides it (ADR-0033).

A zone (``zone.home``, ``zone.work``) is an entity with ``latitude``, ``longitude`` and
``radius`` (metres) attributes; a person or device tracker carries its ``latitude``,
``longitude`` and ``gps_accuracy`` (metres). An entity is in a zone when its distance to the
zone's centre, less its accuracy, is under the radius. Distances are geodesic on the WGS-84
ellipsoid (Vincenty's inverse formula, as HA measures them), so a point a metre inside a
100 m zone is inside here too. Pure functions.
"""

from __future__ import annotations

import math
from typing import Final

from ruby_schemas.ha_events import EntityState

_A: Final = 6378137.0
"""WGS-84 semi-major axis (m)."""
_F: Final = 1 / 298.257223563
"""WGS-84 flattening."""
_B: Final = (1 - _F) * _A
_UNKNOWN: Final = frozenset({"unavailable", "unknown"})


def has_location(state: EntityState) -> bool:
    """Whether ``state`` carries a position: ``latitude`` and ``longitude`` as decimals (HA
    requires floats: a tracker that reports none, or whole numbers, has no position)."""
    attributes = state.attributes
    return isinstance(attributes.get("latitude"), float) and isinstance(
        attributes.get("longitude"), float
    )


def in_zone(zone: EntityState, entity: EntityState) -> bool:
    """Whether ``entity`` is inside ``zone``.

    False when the entity is ``unavailable``/``unknown`` or the zone is ``unavailable`` or
    has no centre and radius; `ValueError` (``has no 'latitude' attribute``) when the entity
    has no ``latitude`` or ``longitude``, as HA's condition reports it."""
    if entity.state in _UNKNOWN:
        return False
    latitude, longitude = (entity.attributes.get(name) for name in ("latitude", "longitude"))
    for name, value in (("latitude", latitude), ("longitude", longitude)):
        if value is None:
            raise ValueError(f"has no '{name}' attribute")
    if zone.state == "unavailable":
        return False
    numbers = [
        finite_number(value)
        for value in (latitude, longitude, zone.attributes.get("latitude"),
                      zone.attributes.get("longitude"), zone.attributes.get("radius"))
    ]  # fmt: skip
    lat, lon, zone_lat, zone_lon, radius = numbers
    if lat is None or lon is None or zone_lat is None or zone_lon is None or radius is None:
        return False
    metres = distance(lat, lon, zone_lat, zone_lon)
    accuracy = finite_number(entity.attributes.get("gps_accuracy")) or 0.0
    return metres is not None and metres - accuracy < radius


def distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float | None:
    """The geodesic distance in metres between two points (degrees), on WGS-84; None if the
    iteration does not converge (nearly antipodal points)."""
    if (lat1, lon1) == (lat2, lon2):
        return 0.0
    u1 = math.atan((1 - _F) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - _F) * math.tan(math.radians(lat2)))
    sin_u1, cos_u1, sin_u2, cos_u2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    longitude = math.radians(lon2 - lon1)
    lam = longitude
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        if sin_sigma == 0.0:
            return 0.0
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha**2
        cos_2sm = cos_sigma - 2 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
        c = _F / 16 * cos2_alpha * (4 + _F * (4 - 3 * cos2_alpha))
        previous = lam
        lam = longitude + (1 - c) * _F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm**2))
        )
        if abs(lam - previous) < 1e-12:
            break
    else:
        return None
    u_sq = cos2_alpha * (_A**2 - _B**2) / _B**2
    a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta_sigma = (
        b
        * sin_sigma
        * (
            cos_2sm
            + b
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm**2)
                - b / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    return _B * a * (sigma - delta_sigma)


def finite_number(value: object) -> float | None:
    """An attribute as a finite number (an ``int`` too), or None (text, ``true``, NaN...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
