"""``zone``: a person or device tracker enters or leaves a zone (by position, as in HA)."""

from __future__ import annotations

from typing import Literal

from ruby_rules.context import NO_STATES, States
from ruby_rules.geo import has_location, in_zone
from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import EntityId, EntityIds
from ruby_schemas.ha_events import EntityState


class ZoneTriggerConfig(TriggerConfig):
    """Fires when one of ``entity_id`` moves into (``enter``) or out of (``leave``) ``zone``,
    judged by its ``latitude``/``longitude``/``gps_accuracy`` against the zone's
    ``latitude``/``longitude``/``radius`` attributes."""

    kind: Literal["zone"]
    entity_id: EntityIds
    """The persons or device trackers (``person.paulus``, ``device_tracker.phone``)."""
    zone: EntityId
    """The zone (``zone.home``)."""
    event: Literal["enter", "leave"] = "enter"
    """``enter`` (default) or ``leave``."""


@REGISTRY.register
class ZoneTrigger(Trigger[ZoneTriggerConfig]):
    """Watches its entities (not the zone: moving a zone fires nothing, as in HA)."""

    CONFIG = ZoneTriggerConfig

    def watch(self) -> Watch:
        """Its entities."""
        return Watch(entities=self.config.entity_id)

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether the change crosses the zone's border the configured way. A state without a
        position on either side, or an unknown zone, fires nothing."""
        if any(state is not None and not has_location(state) for state in (old, new)):
            return False
        zone = states.get(self.config.zone)
        if zone is None:
            return False
        was = old is not None and in_zone(zone, old)
        now = new is not None and in_zone(zone, new)
        return (not was and now) if self.config.event == "enter" else (was and not now)
