"""The lean projection's entries: what the gateway stores per entity in the projection bucket.

Not a message: a KV value (key = entity id), written by the gateway and read by the engine (the
``for`` re-check, its start-up view) and by ``rubyctl audit why`` (the entity's context).
Readers ignore fields added later, so the gateway may add one without breaking them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ruby_schemas.ha_events import EntityState
from ruby_schemas.primitives import JsonObject, UtcDatetime


class ProjectionEntry(BaseModel):
    """One entity's current state as the projection keeps it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: str
    """The state value."""
    attributes: JsonObject = Field(default_factory=dict)
    """The few attributes the projection keeps (friendly name, unit, brightness...)."""
    last_changed: UtcDatetime
    """When the state last changed."""
    last_updated: UtcDatetime
    """When the state or attributes last changed."""
    context_id: str
    """Home Assistant's context id of the change: for a change Ruby Core caused, the context
    of its service call (the link ``rubyctl audit why`` follows)."""

    def entity_state(self) -> EntityState:
        """As the state contracts carry it."""
        return EntityState(
            state=self.state,
            attributes=dict(self.attributes),
            last_changed=self.last_changed,
            last_updated=self.last_updated,
        )
