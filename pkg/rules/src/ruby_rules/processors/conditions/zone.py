"""``zone``: every listed entity is in one of the listed zones (by position, as in HA)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ruby_rules.geo import in_zone
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityIds


class ZoneConditionConfig(ConditionConfig):
    """Holds when each of ``entity_id`` is inside at least one of ``zone``."""

    kind: Literal["zone"]
    entity_id: EntityIds
    """Persons or device trackers."""
    zone: EntityIds
    """Zones (``zone.home``...)."""


@REGISTRY.register
class ZoneCondition(Condition[ZoneConditionConfig]):
    """Reads the entities' and zones' current states."""

    CONFIG = ZoneConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether every entity is in one of the zones. An entity ``unavailable`` or
        ``unknown`` is in none. A missing zone or entity, or an entity without a position,
        fails the run (`ValueError`, every reason named) unless the answer is already known
        to be true without it, as HA decides."""
        errors: list[str] = []
        every = True
        for entity_id in self.config.entity_id:
            inside = False
            for zone_id in self.config.zone:
                problem = self._in(states, zone_id, entity_id)
                if isinstance(problem, str):
                    errors.append(f"error matching {entity_id} with {zone_id}: {problem}")
                else:
                    inside = inside or problem
            every = every and inside
        if errors and not every:
            raise ValueError("zone condition: " + "; ".join(errors))
        return every

    @staticmethod
    def _in(states: States, zone_id: str, entity_id: str) -> bool | str:
        """Whether the entity is in the zone, or why that cannot be told."""
        zone, entity = states.get(zone_id), states.get(entity_id)
        if zone is None:
            return f"unknown zone {zone_id}"
        if entity is None:
            return f"unknown entity {entity_id}"
        try:
            return in_zone(zone, entity)
        except ValueError as error:
            return f"entity {entity_id} {error}"
