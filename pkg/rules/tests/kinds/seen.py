"""Two trigger kinds that exist only in a test, for what a trigger may read besides the change
that reached it: every entity's states.

- ``clock_from`` is timed, at the ``HH:MM`` an entity's state gives (as a time trigger at an
  ``input_datetime``): it watches that entity, and the engine arms it anew when it changes.
- ``first_on`` watches every entity and fires when the first of them turns ``on`` (as a
  template trigger whose entities cannot be told in advance)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal

from ruby_rules.context import NO_STATES, States
from ruby_rules.processors.base import TimedTrigger, Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityId
from ruby_schemas.ha_events import EntityState


class ClockFromTriggerConfig(TriggerConfig):
    """Fires every day at the ``HH:MM`` that ``entity_id``'s state holds."""

    kind: Literal["clock_from"]
    entity_id: EntityId
    """The entity whose state is the time."""


@REGISTRY.register
class ClockFromTrigger(TimedTrigger[ClockFromTriggerConfig]):
    """Timed, and watching its entity so that a new time re-arms it."""

    CONFIG = ClockFromTriggerConfig

    def watch(self) -> Watch:
        """Its entity, and the clock."""
        return Watch(entities=(self.config.entity_id,), timed=True)

    def next_fire(self, after: datetime, states: States = NO_STATES) -> datetime | None:
        """The entity's time today, or tomorrow if passed; None without a valid time."""
        state = states.get(self.config.entity_id)
        try:
            at = time.fromisoformat(state.state) if state is not None else None
        except ValueError:
            at = None
        if at is None:
            return None
        fire = datetime.combine(after.date(), at, after.tzinfo)
        return fire if fire > after else fire + timedelta(days=1)


class FirstOnTriggerConfig(TriggerConfig):
    """Fires when an entity turns ``on`` while no other entity is ``on``."""

    kind: Literal["first_on"]


@REGISTRY.register
class FirstOnTrigger(Trigger[FirstOnTriggerConfig]):
    """Offered every change; reads every entity's states."""

    CONFIG = FirstOnTriggerConfig

    def watch(self) -> Watch:
        """Every entity."""
        return Watch(all_entities=True)

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """``new`` is ``on``, was not, and it is the only entity ``on`` in ``states``."""
        if new is None or new.state != "on" or (old is not None and old.state == "on"):
            return False
        return sum(state.state == "on" for state in states.values()) == 1
