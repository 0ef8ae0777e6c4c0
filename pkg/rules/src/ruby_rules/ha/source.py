"""Reading a Home Assistant automation and writing its native form, keeping every location.

The translators read the HA document by path and build plain native values (the dicts a
``rules:`` file would hold). `Writer` records, for each native path it writes, the line and
column of the HA text it came from, so that a native validation error on a translated field
points at the HA source. Problems found while translating (a feature not supported yet, a
value HA itself would refuse) are collected with their HA location; none is ever dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from ruby_rules.errors import describe, show_path
from ruby_rules.yamldoc import START, Document, Location, Path

NOT_YET: Final = "is not supported yet"
"""The phrase every refusal of an HA feature Ruby Core cannot run yet ends its feature name with."""

Native = dict[str, object]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One problem of an automation: where in the HA text, the HA path, and what."""

    where: Location
    path: Path
    message: str
    feature: str | None = None
    """For a feature Ruby Core cannot run yet, its name (``device trigger``); else ``None``."""


@dataclass
class Writer:
    """Translates one automation: reads ``source`` by path, records native locations."""

    source: Document
    base: Path
    """The automation's own path in ``source``; refusals show paths relative to it."""
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)

    def get(self, src: Path) -> object:
        """The HA value at ``src`` (``None`` if there is none)."""
        return value_at(self.source.value, src)

    def where(self, src: Path) -> Location:
        """Where the value at ``src`` starts in the HA text."""
        return self.source.values.get(src) or self.source.values.get(self.base, START)

    def key_where(self, src: Path) -> Location:
        """Where the key of the value at ``src`` starts (the value's place if it has no key)."""
        return self.source.keys.get(src) or self.where(src)

    def mark(self, dst: Path, src: Path) -> None:
        """The native value at ``dst`` comes from the HA value at ``src``."""
        self.values[dst] = self.where(src)
        self.keys[dst] = self.key_where(src)

    def copy(self, src: Path, dst: Path) -> object:
        """The HA value at ``src`` as it is, every location below it recorded under ``dst``."""
        self.mark(dst, src)
        value = self.get(src)
        if isinstance(value, dict):
            return {key: self.copy((*src, key), (*dst, key)) for key in value}
        if isinstance(value, list):
            return [self.copy((*src, i), (*dst, i)) for i in range(len(value))]
        return value

    def items(self, src: Path) -> Iterator[Path]:
        """The paths of the items of a list at ``src``; a single value is its own one item."""
        value = self.get(src)
        if isinstance(value, list):
            yield from ((*src, i) for i in range(len(value)))
        elif value is not None:
            yield src

    def refuse(
        self, src: Path, message: str, *, at_key: bool = True, feature: str | None = None
    ) -> None:
        """A problem with the HA value at ``src`` (located at its key, or at the value)."""
        where = self.key_where(src) if at_key else self.where(src)
        self.refusals.append(Refusal(where, src[len(self.base) :], message, feature))

    def not_yet(self, src: Path, feature: str, hint: str = "", *, detail: str = "") -> None:
        """``<feature> (<detail>) is not supported yet: <hint>``, at ``src``.

        ``feature`` names what is missing the same way wherever it occurs (reports count
        by it); ``detail`` says which value, ``hint`` what to do instead.
        """
        shown = f"{feature} ({detail})" if detail else feature
        self.refuse(src, f"{shown} {NOT_YET}{': ' + hint if hint else ''}", feature=feature)

    def expect(self, src: Path, what: str) -> None:
        """The value at ``src`` is not what HA accepts either: say what was expected."""
        got = describe(self.get(src))
        self.refuse(src, f"expected {what}; got {got}", at_key=False)

    def enabled(self, src: Path) -> bool:
        """False when the item at ``src`` says ``enabled: false`` (HA leaves it out)."""
        item = self.get(src)
        if not isinstance(item, dict) or "enabled" not in item:
            return True
        flag = item["enabled"]
        if isinstance(flag, bool):
            return flag
        if isinstance(flag, str) and "{{" in flag:
            self.not_yet((*src, "enabled"), "'enabled' from a template")
        else:
            self.expect((*src, "enabled"), "true or false")
        return True

    def shown(self, src: Path) -> str:
        """``triggers[0].to`` for an HA path, relative to the automation."""
        return show_path(src[len(self.base) :])


def value_at(value: object, path: Path) -> object:
    """The value at ``path`` inside ``value`` (``None`` if there is none)."""
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def is_template(value: object) -> bool:
    """Whether ``value`` is text holding a Home Assistant template (``{{`` or ``{%``)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


_UNITS: Final = (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0))


def ha_duration(w: Writer, src: Path) -> object:
    """HA's time period at ``src`` in the native form; ``None`` (refused) if it has none.

    HA accepts ``"HH:MM"``, ``"HH:MM:SS"`` (seconds may have a fraction), a number of seconds
    (also as text) and a mapping of ``days``, ``hours``, ``minutes``, ``seconds`` and
    ``milliseconds``. A whole number of seconds becomes ``1h30m``-style text, a fraction a
    number of seconds; the native type then bounds it.
    """
    value = w.get(src)
    seconds: float | None = None
    if is_template(value) or (
        isinstance(value, dict) and any(is_template(v) for v in value.values())
    ):
        w.not_yet(src, "a duration from a template")
        return None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _clock_seconds(value)
    elif isinstance(value, dict):
        seconds = _dict_seconds(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        w.expect(
            src,
            "a duration as Home Assistant writes it: 'HH:MM:SS', a number of seconds, "
            "or a mapping such as {minutes: 5}",
        )
        return None
    return native_duration(seconds)


def ha_offset(w: Writer, src: Path) -> object:
    """HA's signed time period at ``src`` (``"-01:00:00"``, ``-90``, ``{minutes: -5}``) in the
    native form (``"-1h"``); ``None`` (refused) if it has none."""
    value = w.get(src)
    seconds: float | None = None
    if isinstance(value, str) and not is_template(value):
        negative = value.strip().startswith("-")
        seconds = _clock_seconds(value.strip().lstrip("+-"))
        seconds = -seconds if negative and seconds is not None else seconds
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, dict) and not any(is_template(v) for v in value.values()):
        seconds = _dict_seconds(value)
    if seconds is None or not math.isfinite(seconds):
        w.expect(src, "an offset as Home Assistant writes it: '-01:00:00', '+00:30:00', seconds")
        return None
    return native_duration(seconds)


def _clock_seconds(text: str) -> float | None:
    parts = text.strip().split(":")
    try:
        if len(parts) == 1:
            return float(parts[0])
        if len(parts) in (2, 3) and all(p.strip().isdigit() for p in parts[:-1]):
            hours, minutes = int(parts[0]), int(parts[1])
            seconds = float(parts[2]) if len(parts) == 3 else 0.0
            return hours * 3600.0 + minutes * 60.0 + seconds
    except ValueError:
        return None
    return None


def _dict_seconds(value: dict[str, object]) -> float | None:
    scale = dict(_UNITS) | {"milliseconds": 0.001}
    total = 0.0
    for key, amount in value.items():
        if key not in scale or isinstance(amount, bool) or not isinstance(amount, int | float):
            return None
        total += float(amount) * scale[key]
    return total if value else None


def native_duration(seconds: float) -> str | float:
    """``5400`` -> ``"1h30m"``, ``-60`` -> ``"-1m"`` (an offset); a fraction of a second stays
    a number of seconds."""
    if seconds < 0:
        magnitude = native_duration(-seconds)
        return f"-{magnitude}" if isinstance(magnitude, str) else -magnitude
    if seconds != int(seconds) or seconds > 1e12:
        return seconds
    whole, text = int(seconds), ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        text += f"{count}{unit}" if count else ""
    return text or "0s"
