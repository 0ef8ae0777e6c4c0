"""States as Home Assistant's templates see them: ``states``, ``is_state``, ``expand``...

`StateView` is what HA calls a template state (``state``, ``attributes``, ``last_changed``,
``name``...); `AllStates` is the ``states`` variable (``states('sensor.x')``,
``states.sensor.x.state``, ``states.light`` to iterate a domain). Everything reads the run's
`ruby_rules.context.Context` (the engine's view of states), never Home Assistant itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ruby_rules.context import Context
from ruby_rules.jinja import scope
from ruby_rules.jinja.budget import current
from ruby_schemas.ha_events import EntityState

UNKNOWN: Final = "unknown"
UNAVAILABLE: Final = "unavailable"


@dataclass(frozen=True, slots=True)
class StateView:
    """One entity's state, read-only, with the attributes of Home Assistant's ``State``."""

    entity_id: str
    state: str
    attributes: Mapping[str, Any]
    last_changed: datetime
    last_updated: datetime

    @property
    def domain(self) -> str:
        """``light`` of ``light.hallway``."""
        return self.entity_id.partition(".")[0]

    @property
    def object_id(self) -> str:
        """``hallway`` of ``light.hallway``."""
        return self.entity_id.partition(".")[2]

    @property
    def name(self) -> str:
        """The ``friendly_name`` attribute, else the object id with spaces for ``_``."""
        friendly = self.attributes.get("friendly_name")
        return str(friendly) if friendly is not None else self.object_id.replace("_", " ")

    @property
    def last_reported(self) -> datetime:
        """As Home Assistant has it; the engine knows ``last_updated`` only."""
        return self.last_updated

    @property
    def state_with_unit(self) -> str:
        """``21.5 °C``: the state and its ``unit_of_measurement``, if any."""
        unit = self.attributes.get("unit_of_measurement")
        return self.state if unit is None else f"{self.state} {unit}"

    def __str__(self) -> str:
        """As Home Assistant writes a state: ``<state light.x=on; brightness=128 @ ...>``."""
        attributes = ", ".join(f"{key}={value}" for key, value in self.attributes.items())
        shown = f"; {attributes}" if attributes else ""
        try:
            changed = self.last_changed.astimezone(scope.run().now.tzinfo).isoformat()
        except scope.NoRun:  # printed outside a render
            changed = self.last_changed.isoformat()
        return f"<state {self.entity_id}={self.state}{shown} @ {changed}>"


def view(entity_id: str, state: EntityState | None) -> StateView | None:
    """The template view of ``state``, or None."""
    if state is None:
        return None
    return StateView(
        entity_id,
        state.state,
        dict(state.attributes),  # a copy: nothing a template does reaches the engine's
        state.last_changed,
        state.last_updated,
    )


def get(entity_id: Any) -> StateView | None:
    """The state of ``entity_id`` in the run, a `StateView`; None if unknown (or not text)."""
    if isinstance(entity_id, StateView):
        return entity_id
    if not isinstance(entity_id, str):
        return None
    return view(entity_id, scope.run().states.get(entity_id.lower()))


def _sorted_views(ctx: Context, domain: str | None) -> list[StateView]:
    views = [
        view(entity_id, state)
        for entity_id, state in ctx.states.items()
        if domain is None or entity_id.partition(".")[0] == domain
    ]
    current().build(len(views))
    return sorted((v for v in views if v is not None), key=lambda v: v.entity_id)


class DomainStates:
    """``states.light``: the states of one domain; ``states.light.x`` is one of them."""

    __slots__ = ("_domain",)

    def __init__(self, domain: str) -> None:
        self._domain = domain

    def __getattr__(self, object_id: str) -> StateView | None:
        if object_id.startswith("_"):
            raise AttributeError(object_id)
        return get(f"{self._domain}.{object_id}")

    def __iter__(self) -> Iterator[StateView]:
        return iter(_sorted_views(scope.run(), self._domain))

    def __len__(self) -> int:
        return sum(1 for e in scope.run().states if e.partition(".")[0] == self._domain)

    def __repr__(self) -> str:
        return f"<template DomainStates('{self._domain}')>"


class AllStates:
    """``states``: call it (``states('sensor.x')``), read a domain (``states.sensor``) or an
    entity (``states.sensor.x``, ``states['sensor.x']``), or iterate every state."""

    __slots__ = ()

    def __getattr__(self, name: str) -> DomainStates | StateView | None:
        if name.startswith("_"):
            raise AttributeError(name)
        if "." in name:
            return get(name)
        return DomainStates(name)

    def __getitem__(self, name: str) -> DomainStates | StateView | None:
        return self.__getattr__(name)

    def __iter__(self) -> Iterator[StateView]:
        return iter(_sorted_views(scope.run(), None))

    def __len__(self) -> int:
        return len(scope.run().states)

    def __call__(self, entity_id: Any, rounded: bool = False, with_unit: bool = False) -> str:
        if rounded:
            raise ValueError(
                "states(..., rounded=true) is not supported yet: it needs the entity "
                "registry's display precision"
            )
        found = get(entity_id)
        if found is None:
            return UNKNOWN
        return found.state_with_unit if with_unit else found.state

    def __repr__(self) -> str:
        return "<template AllStates>"


STATES: Final = AllStates()


def is_state(entity_id: Any, state: Any) -> bool:
    """Whether the entity's state is ``state``, or one of a list of states."""
    found = get(entity_id)
    return found is not None and (
        found.state == state or (isinstance(state, list | tuple) and found.state in state)
    )


def state_attr(entity_id: Any, name: Any) -> Any:
    """The attribute ``name`` of the entity, or None."""
    found = get(entity_id)
    return None if found is None else found.attributes.get(name)


def is_state_attr(entity_id: Any, name: Any, value: Any) -> bool:
    """Whether the attribute ``name`` of the entity is ``value`` (and not None)."""
    attribute = state_attr(entity_id, name)
    return attribute is not None and attribute == value


def has_value(entity_id: Any) -> bool:
    """Whether the entity exists and is neither ``unknown`` nor ``unavailable``."""
    found = get(entity_id)
    return found is not None and found.state not in (UNKNOWN, UNAVAILABLE)


def expand(*items: Any) -> list[StateView]:
    """The states of entities, lists of them and groups' members, sorted by entity id.

    A ``group.*`` entity gives its members (its ``entity_id`` attribute), a ``zone.*`` its
    ``persons``; the group or zone itself is left out, as in Home Assistant.
    """
    search: list[Any] = list(items)
    found: dict[str, StateView] = {}
    seen: set[str] = set()
    budget = current()
    while search:
        budget.step()
        item = search.pop()
        state = item if isinstance(item, StateView) else get(item)
        if state is None:
            if isinstance(item, list | tuple | Iterator):
                budget.build(len(search))
                search.extend(item)
            continue
        if state.entity_id in seen:
            continue
        seen.add(state.entity_id)
        members = {"group": "entity_id", "zone": "persons"}.get(state.domain)
        if members is None:
            found[state.entity_id] = state
        elif isinstance(listed := state.attributes.get(members), list | tuple):
            budget.build(len(listed))
            search.extend(listed)
    return sorted(found.values(), key=lambda s: s.entity_id)


def trigger_record(ctx: Context) -> Mapping[str, Any] | None:
    """``trigger`` in a template: Home Assistant's trigger variables, built for each render
    (the immutable sandbox lets a template change no mapping or list anyway).

    ``platform`` (HA's name) and ``kind`` (ours) are the trigger kind; ``id``, ``entity_id``,
    ``from_state`` / ``to_state`` (`StateView`), ``event`` (``event_type``, ``data``),
    ``now`` (a datetime, for time triggers), ``webhook_id``, ``json`` (the body, or
    ``none``), ``query``, ``method`` and ``caller`` (the token's name) for webhook triggers,
    and Ruby Core's ``event_id`` and ``time`` (ISO text).
    """
    trigger = ctx.trigger
    if trigger is None:
        return None
    event = None
    if trigger.event_type is not None:
        event = {"event_type": trigger.event_type, "data": dict(trigger.event_data)}
    record: dict[str, Any] = {
        "platform": trigger.kind,
        "kind": trigger.kind,
        "id": trigger.id,
        "event_id": trigger.event_id,
        "time": trigger.time.isoformat(),
        "entity_id": trigger.entity_id,
        "from_state": view(trigger.entity_id or "", trigger.from_state),
        "to_state": view(trigger.entity_id or "", trigger.to_state),
        "event": event,
    }
    if trigger.kind in ("time", "time_pattern"):
        record["now"] = trigger.time
    if trigger.kind == "webhook":  # a call, not a bus event
        record["event"] = None
        record.update(trigger.webhook_fields())
    return record
