"""``homeassistant``: Home Assistant started, or shut down, as the gateway saw it.

The gateway publishes one ``ha.lifecycle.v1`` per Home Assistant run and event (ADR-0032);
the engine offers it to the triggers as an event of type ``homeassistant.start`` or
``homeassistant.shutdown`` (`ruby_schemas.ha_events.LIFECYCLE_EVENT_TYPES`), which no bus
event can have (a rule's event types are subject tokens: no dots).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import JsonValue

from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_schemas.ha_events import LIFECYCLE_EVENT_TYPES


class HomeAssistantTriggerConfig(TriggerConfig):
    """Fires once when Home Assistant has started, or once when it shuts down."""

    kind: Literal["homeassistant"]
    event: Literal["start", "shutdown"]
    """``start``: Home Assistant has started (also when the gateway finds it started anew
    after a reconnect); ``shutdown``: Home Assistant closed the gateway's connection to stop."""


@REGISTRY.register
class HomeAssistantTrigger(Trigger[HomeAssistantTriggerConfig]):
    """Indexed by the lifecycle event type of its ``event``."""

    CONFIG = HomeAssistantTriggerConfig

    @property
    def event_type(self) -> str:
        """The event type the engine offers this trigger's lifecycle events under."""
        return LIFECYCLE_EVENT_TYPES[self.config.event]

    def watch(self) -> Watch:
        """Indexed by its lifecycle event type."""
        return Watch(event_types=(self.event_type,))

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Whether the lifecycle event is this trigger's."""
        return event_type == self.event_type
