"""``event``: a Home Assistant bus event of one of its types, optionally with matching data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, JsonValue

from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.types import token
from ruby_schemas.primitives import JsonObject


def _event_types(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("expected an event type or a list of at least one")
        return tuple(token(_text(item)) for item in value)
    return token(_text(value))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an event type (text); got {value!r}"[:200])  # noqa: TRY004 - pydantic reports only ValueError
    return value


class EventTriggerConfig(TriggerConfig):
    """Fires on an event of ``event_type`` (one, or any of a list) whose data contains every
    pair of ``event_data``."""

    kind: Literal["event"]
    event_type: Annotated[str | tuple[str, ...], BeforeValidator(_event_types)]
    """The event type, such as ``zha_event`` (one subject token), or a list of them. One type
    stays text, so a rule written before lists existed keeps its trigger hash."""
    event_data: JsonObject = Field(default_factory=dict)
    """Pairs the event's data must contain (compared for equality); empty matches any."""


@REGISTRY.register
class EventTrigger(Trigger[EventTriggerConfig]):
    """Matches an event by type and a subset of its data."""

    CONFIG = EventTriggerConfig

    def event_types(self) -> tuple[str, ...]:
        """The types it fires on."""
        wanted = self.config.event_type
        return (wanted,) if isinstance(wanted, str) else wanted

    def watch(self) -> Watch:
        """Indexed by its event types."""
        return Watch(event_types=self.event_types())

    def matches_event(self, event_type: str, data: Mapping[str, JsonValue]) -> bool:
        """Whether an event of ``event_type`` carrying ``data`` fires this trigger."""
        if event_type not in self.event_types():
            return False
        return all(
            key in data and data[key] == value for key, value in self.config.event_data.items()
        )
