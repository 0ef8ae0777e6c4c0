"""The virtual home: entities described in YAML, and the live state machine that runs them.

`HomeSpec` is the description (loaded from YAML, the packaged default, or generated); `Home` is
the running state machine, which applies Home Assistant's rules for `last_changed`,
`last_updated` and `last_reported` and fires `state_changed` to its listeners synchronously.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

import yaml

from ruby_hasim import const
from ruby_hasim.model import Context, Event, JsonObject, JsonValue, State, utcnow

ENTITY_ID = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*\.[a-z0-9]+(?:_[a-z0-9]+)*$")

Listener = Callable[[Event], None]
"""Called synchronously with every event the home fires."""


class HomeError(ValueError):
    """A home description is invalid; the message says where."""


@dataclass(frozen=True)
class Kind:
    """One kind of entity in a home file: its section name, domain and default attributes."""

    section: str
    domain: str
    defaults: Mapping[str, JsonValue] = field(default_factory=dict)


KINDS: tuple[Kind, ...] = (
    Kind("lights", "light", {"supported_color_modes": ["brightness"], "supported_features": 0}),
    Kind("switches", "switch"),
    Kind("motion_sensors", "binary_sensor", {"device_class": "motion"}),
    Kind("sensors", "sensor", {"state_class": "measurement"}),
    Kind("input_booleans", "input_boolean", {"editable": False}),
    Kind(
        "input_numbers",
        "input_number",
        {"initial": None, "editable": False, "min": 0.0, "max": 100.0, "step": 1.0},
    ),
)
_BY_SECTION = {kind.section: kind for kind in KINDS}


@dataclass(frozen=True)
class EntitySpec:
    """One entity of a home: its id, initial state, attributes and optional area.

    A light's `brightness` is the brightness it turns on at, even while it starts off.
    """

    entity_id: str
    state: str
    attributes: JsonObject
    area_id: str | None = None


@dataclass(frozen=True)
class HomeSpec:
    """A home's description: the entities it starts with."""

    entities: tuple[EntitySpec, ...]


def light_attributes(attributes: Mapping[str, JsonValue], on: bool) -> JsonObject:
    """A light's attributes as Home Assistant shows them: brightness only while on."""
    result = dict(attributes)
    brightness = result.get("brightness")
    result["color_mode"] = "brightness" if on else None
    result["brightness"] = (brightness if isinstance(brightness, int) else 255) if on else None
    return result


def _friendly(object_id: str) -> str:
    return object_id.replace("_", " ").capitalize()


def _entity(kind: Kind, raw: object, where: str) -> EntitySpec:
    if not isinstance(raw, dict):
        raise HomeError(f"{where}: expected a mapping with entity_id and state")
    entity_id, state = raw.get("entity_id"), raw.get("state")
    if not isinstance(entity_id, str) or not ENTITY_ID.match(entity_id):
        raise HomeError(f"{where}: entity_id must look like domain.object_id, got {entity_id!r}")
    if not entity_id.startswith(f"{kind.domain}."):
        raise HomeError(f"{where}: {entity_id} is not in domain {kind.domain}")
    if not isinstance(state, str | int | float) or isinstance(state, bool):
        raise HomeError(f"{where}: state must be a string or a number (quote on/off in YAML)")
    attributes = raw.get("attributes", {})
    if not isinstance(attributes, dict):
        raise HomeError(f"{where}: attributes must be a mapping")
    area = raw.get("area_id")
    if area is not None and not isinstance(area, str):
        raise HomeError(f"{where}: area_id must be a string")
    unknown = set(raw) - {"entity_id", "state", "attributes", "area_id"}
    if unknown:
        raise HomeError(f"{where}: unknown keys {sorted(unknown)}")
    merged: JsonObject = {**kind.defaults, **attributes}
    merged.setdefault("friendly_name", _friendly(entity_id.split(".", 1)[1]))
    return EntitySpec(entity_id, str(state), merged, area)


def parse_home(data: object) -> HomeSpec:
    """Read a home from parsed YAML: a mapping from section (`lights`, ...) to entities."""
    if not isinstance(data, dict):
        raise HomeError(f"a home is a mapping with sections {sorted(_BY_SECTION)}")
    entities: list[EntitySpec] = []
    seen: set[str] = set()
    for section, items in data.items():
        kind = _BY_SECTION.get(section)
        if kind is None:
            raise HomeError(f"unknown section {section!r}; expected one of {sorted(_BY_SECTION)}")
        if not isinstance(items, list):
            raise HomeError(f"{section}: expected a list of entities")
        for index, raw in enumerate(items):
            spec = _entity(kind, raw, f"{section}[{index}]")
            if spec.entity_id in seen:
                raise HomeError(f"{section}[{index}]: duplicate entity_id {spec.entity_id}")
            seen.add(spec.entity_id)
            entities.append(spec)
    return HomeSpec(tuple(entities))


def load_home(path: str | Path) -> HomeSpec:
    """Read a home from a YAML file."""
    return parse_home(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def default_home() -> HomeSpec:
    """The small home shipped with the package (`ruby_hasim/homes/default.yaml`)."""
    text = importlib.resources.files("ruby_hasim").joinpath("homes/default.yaml").read_text("utf-8")
    return parse_home(yaml.safe_load(text))


def generate_home(n: int) -> HomeSpec:
    """`n` entities, deterministic: 40% lights, 20% switches, 15% motion, 15% sensors, helpers."""
    shares = (("lights", 40), ("switches", 20), ("motion_sensors", 15), ("sensors", 15))
    sections: dict[str, list[object]] = {}
    made = 0
    for section, percent in shares:
        count = n * percent // 100
        sections[section] = [_generated(section, made + i) for i in range(count)]
        made += count
    sections["input_booleans"] = [_generated("input_booleans", made + i) for i in range(n - made)]
    return parse_home(sections)


def _generated(section: str, i: int) -> JsonObject:
    kind = _BY_SECTION[section]
    entity: JsonObject = {"entity_id": f"{kind.domain}.gen_{i:05d}", "state": "off"}
    if section == "lights":
        entity.update(state="on" if i % 2 else "off", attributes={"brightness": i % 255 + 1})
    elif section == "sensors":
        entity.update(state=f"{20 + i % 10}.5", attributes={"unit_of_measurement": "°C"})
    return entity


def _initial(spec: EntitySpec) -> JsonObject:
    if spec.entity_id.startswith("light."):
        return light_attributes(spec.attributes, spec.state == "on")
    return dict(spec.attributes)


class Home:
    """The live state machine of a home. Not thread-safe; use it from the simulator's loop.

    Changes apply at once and fire their events synchronously to every listener, so a caller
    that changes the home and then awaits sees the events queued on every connection.
    """

    def __init__(self, spec: HomeSpec) -> None:
        now = utcnow()
        context = Context()
        self._states = {
            e.entity_id: State(e.entity_id, e.state, _initial(e), now, now, now, context)
            for e in spec.entities
        }
        self._areas = {e.entity_id: e.area_id for e in spec.entities if e.area_id}
        self._listeners: list[Listener] = []
        self.core_state = "RUNNING"
        """Home Assistant's core state, as ``get_config`` reports it: ``NOT_RUNNING``,
        ``STARTING``, ``RUNNING``, ``STOPPING`` (`Simulator.shut_down` and `boot` move it)."""

    def reboot(self) -> None:
        """Every state written anew, as after a restart of Home Assistant: the same values,
        ``last_changed``, ``last_updated`` and ``last_reported`` now, a new context (Home
        Assistant does not restore those); no event fires. The core state is ``NOT_RUNNING``."""
        now = utcnow()
        self._states = {
            entity_id: State(entity_id, old.state, old.attributes, now, now, now, Context())
            for entity_id, old in self._states.items()
        }
        self.core_state = "NOT_RUNNING"

    @property
    def states(self) -> Mapping[str, State]:
        """The current states by entity id (a read-only live view)."""
        return MappingProxyType(self._states)

    def get(self, entity_id: str) -> State | None:
        """The current state of `entity_id`, or None."""
        return self._states.get(entity_id)

    def in_area(self, area_id: str) -> list[str]:
        """The entities placed in `area_id`."""
        return [entity for entity, area in self._areas.items() if area == area_id]

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event from now on; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def fire(
        self,
        event_type: str,
        data: JsonObject,
        context: Context | None = None,
        time_fired: datetime | None = None,
    ) -> Event:
        """Fire an event on the bus."""
        event = Event(event_type, data, context or Context(), time_fired or utcnow())
        for listener in list(self._listeners):
            listener(event)
        return event

    def set_state(
        self,
        entity_id: str,
        state: str | None = None,
        attributes: Mapping[str, JsonValue] | None = None,
        *,
        merge: bool = True,
        context: Context | None = None,
    ) -> State:
        """Set an entity's state and attributes, creating it if needed; return the new state.

        `state=None` keeps the current value; `attributes` are merged into the current ones
        unless `merge=False`. As in Home Assistant, `last_changed` moves only when the state
        value changes, `last_updated` also when attributes change, and a write that changes
        nothing moves only `last_reported` and fires no `state_changed`.
        """
        if not ENTITY_ID.match(entity_id):
            raise ValueError(f"invalid entity id {entity_id!r}")
        old = self._states.get(entity_id)
        if state is None:
            if old is None:
                raise ValueError(f"{entity_id} does not exist; give its state")
            state = old.state
        new_attributes: JsonObject = dict(old.attributes) if old and merge else {}
        new_attributes.update(attributes or {})
        now = utcnow()
        context = context or Context()
        if old is not None and old.state == state and old.attributes == new_attributes:
            self._states[entity_id] = State(
                entity_id,
                state,
                old.attributes,
                old.last_changed,
                old.last_updated,
                now,
                old.context,
            )
            return self._states[entity_id]
        last_changed = old.last_changed if old is not None and old.state == state else now
        new = State(entity_id, state, new_attributes, last_changed, now, now, context)
        self._states[entity_id] = new
        self._fire_changed(entity_id, old, new, context, now)
        return new

    def remove_entity(self, entity_id: str, *, context: Context | None = None) -> State | None:
        """Remove an entity (fires `state_changed` with `new_state` null); return its last state."""
        old = self._states.pop(entity_id, None)
        self._areas.pop(entity_id, None)
        if old is not None:
            self._fire_changed(entity_id, old, None, context or Context(), utcnow())
        return old

    def _fire_changed(
        self,
        entity_id: str,
        old: State | None,
        new: State | None,
        context: Context,
        when: datetime,
    ) -> None:
        data: JsonObject = {
            "entity_id": entity_id,
            "old_state": old.as_dict() if old else None,
            "new_state": new.as_dict() if new else None,
        }
        self.fire(const.EVENT_STATE_CHANGED, data, context, when)
