"""``numeric_state``: an entity's numeric value crossed into a range, optionally ``for`` a while."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ruby_rules.context import NO_STATES, Context, States, TriggerData
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.numeric import NumericRange
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.triggers.entity import EntityTrigger, EntityTriggerConfig
from ruby_rules.processors.types import Duration, EntityIds
from ruby_schemas.ha_events import EntityState


class NumericStateTriggerConfig(EntityTriggerConfig, NumericRange):
    """Fires when the state (or ``attribute``, or ``value_template``'s value) enters the range
    ``above`` .. ``below``, each a number or an entity's numeric state."""

    kind: Literal["numeric_state"]
    entity_id: EntityIds
    """The entity or entities watched."""
    attribute: str | None = Field(default=None, min_length=1)
    """Watch this attribute instead of the state."""
    for_: Duration | None = Field(default=None, alias="for")
    """The value must stay in range this long before the trigger fires."""


@REGISTRY.register
class NumericStateTrigger(EntityTrigger[NumericStateTriggerConfig]):
    """Matches a crossing into the range, not every change while inside it.

    As in Home Assistant, only a change of a watched entity fires it: a bound entity that
    moves (``above: input_number.x``) fires nothing. The state before the watched entity's
    next change is judged against the bounds as they are then (pure: no memory of earlier
    changes), where HA remembers whether the value was out of range at its last change: after
    a bound moves past the value, HA fires at that next change, this once the value has left
    the range and come back. A template that fails, or a bound that is missing or not a
    number, puts nothing in range.
    """

    CONFIG = NumericStateTriggerConfig

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """True when ``new`` is in range and ``old`` was not (or was absent or non-numeric)."""
        if new is None:
            return False
        entity_id, when = self._entity_of(new, states), new.last_updated
        return self._in_range(entity_id, new, states, when) and not self._in_range(
            entity_id, old, states, when
        )

    def still_holds(self, state: EntityState | None, states: States = NO_STATES) -> bool:
        """A ``for`` hold keeps a value inside the range, the bounds as they are now: when the
        watched entity changes, as in HA, and when the hold ends (HA does not check then)."""
        if state is None:
            return False
        return self._in_range(self._entity_of(state, states), state, states, state.last_updated)

    def changed_at(self, state: EntityState) -> datetime:
        """A ``for`` counts from the change that put the value in range: ``last_updated``
        when an attribute or a template (which may read one) gives the value."""
        if self.config.value_template is not None:
            return state.last_updated
        return super().changed_at(state)

    def unchanged(self, armed: EntityState | None, current: EntityState | None) -> bool:
        """Both present when a template gives the value; else as for any entity trigger."""
        if self.config.value_template is not None:
            return armed is not None and current is not None
        return super().unchanged(armed, current)

    def _in_range(
        self, entity_id: str, state: EntityState | None, states: States, when: datetime
    ) -> bool:
        # The template sees HA's trigger variables of a numeric_state trigger; `now()` is the
        # time of the change (a trigger is matched outside any run).
        trigger = TriggerData("numeric_state", self.config.id or "", "", when, entity_id)
        ctx = Context(states=states, now=when, trigger=trigger)
        try:
            return self.config.in_range(entity_id, state, self.config.attribute, ctx)
        except ExpressionError:  # HA logs it and fires nothing
            return False

    def _entity_of(self, state: EntityState, states: States) -> str:
        """Which watched entity ``state`` is (the engine's view holds it, the change applied)."""
        watched = self.config.entity_id
        found = (e for e in watched if states.get(e) is state or states.get(e) == state)
        return next(found, watched[0])
