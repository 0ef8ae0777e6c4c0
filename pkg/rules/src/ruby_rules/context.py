"""What a run can see: the trigger that started it, current states, and the local time.

Conditions, branch selection and expressions all read one `Context`. It is immutable; the
engine builds a new one when the states or the time it reflects change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TypeAlias

from pydantic import JsonValue

from ruby_schemas.ha_events import EntityState

States: TypeAlias = Mapping[str, EntityState]
"""Current states by entity id, as the engine's view of the projection holds them."""

NO_STATES: States = MappingProxyType({})
"""No states at all: what a trigger sees when asked outside the engine (a unit test)."""


@dataclass(frozen=True, slots=True)
class TriggerData:
    """Why a run started: which trigger, on which event, with which states or event data.

    ``event_id`` is the id of the message that fired the trigger (for a timer, the message that
    armed it; for a time trigger, a name for the scheduled instant): with the rule's id and
    version and an action's position it determines every command id of the run.
    """

    kind: str
    """The trigger kind (``state``, ``event``, ``time``...)."""
    id: str
    """The trigger's ``id`` if it has one, else its position in ``triggers`` (``"0"``...)."""
    event_id: str
    """The id of the message (or scheduled instant) that fired the trigger."""
    time: datetime
    """When the trigger fired (aware)."""
    entity_id: str | None = None
    """For state triggers: the entity that changed."""
    from_state: EntityState | None = None
    """For state triggers: the state before the change (``None`` if the entity was new)."""
    to_state: EntityState | None = None
    """For state triggers: the state after the change (``None`` if the entity was removed)."""
    event_type: str | None = None
    """For event triggers: the event's type."""
    event_data: Mapping[str, JsonValue] = field(default_factory=dict)
    """For event triggers: the event's data."""
    correlation_id: str | None = None
    """The correlation id of the triggering message, carried on to every command of the run."""

    def webhook_fields(self) -> dict[str, JsonValue]:
        """For a webhook trigger, the call as HA's trigger variables give it (``webhook_id``,
        ``json``, ``query``, ``description``) and ours (``method``, ``caller``); else none."""
        if self.kind != "webhook":
            return {}
        names = ("webhook_id", "json", "query", "method", "caller")
        return {"description": "webhook", **{name: self.event_data.get(name) for name in names}}


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a condition, a branch or an expression may read during one step of a run."""

    states: States
    """Current states by entity id."""
    now: datetime
    """The current local time (aware)."""
    trigger: TriggerData | None = None
    """The trigger of the run; ``None`` only when checking outside any run."""
    names: Mapping[str, object] = field(default_factory=dict)
    """Further variables its templates see, such as ``state`` in a numeric_state's
    ``value_template`` (``trigger`` and Home Assistant's functions win over them)."""
    variables: Mapping[str, JsonValue] = field(default_factory=dict)
    """The run's variables visible at this step, by name (the rule's ``variables``, a
    ``variables`` action's, ``repeat``, ``wait``): templates read them as names."""
