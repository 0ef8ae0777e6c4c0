"""``event``: a Home Assistant bus event of one type, optionally with matching data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, JsonValue

from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import Token
from ruby_schemas.primitives import JsonObject


class EventTriggerConfig(TriggerConfig):
    """Fires on an event of ``event_type`` whose data contains every pair of ``event_data``."""

    kind: Literal["event"]
    event_type: Token
    """The event type, such as ``zha_event`` (one subject token)."""
    event_data: JsonObject = Field(default_factory=dict)
    """Pairs the event's data must contain (compared for equality); empty matches any."""


@REGISTRY.register
class EventTrigger(Trigger[EventTriggerConfig]):
    """Matches an event by type and a subset of its data."""

    CONFIG = EventTriggerConfig

    def watch(self) -> Watch:
        """Indexed by its event type."""
        return Watch(event_types=(self.config.event_type,))

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Whether an event of ``event_type`` carrying ``data`` fires this trigger."""
        if event_type != self.config.event_type:
            return False
        return all(
            key in data and data[key] == value for key, value in self.config.event_data.items()
        )
