"""``template``: fires when a template's result turns true, optionally held ``for`` a while.

Home Assistant's template trigger: it fires when the result goes from false to true (as
``result_as_boolean`` reads it), and fires again only after it was false once more. Ruby Core
decides that per change, without memory: the result before a change is the template rendered
against the states before it (the changed entity put back to its old state), the result after
against the states with the change applied. A render that fails fires nothing: after the
change, the failure is raised for the engine to trace (Home Assistant logs it); before it, the
trigger was not armed (HA's rule for a template that fails when it starts).

With ``for``, the true result must hold that long: the engine keeps one durable hold for the
whole trigger (`held_under`), disarmed by any change that renders false, and re-checked when
it is due. A failed render keeps the hold going, as Home Assistant ignores it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ruby_rules.context import NO_STATES, States
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Trigger, TriggerConfig
from ruby_rules.processors.protocols import Watch
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.processors.truth import TemplateTruth, watchable
from ruby_rules.processors.types import Duration
from ruby_schemas.ha_events import EntityState

HELD_UNDER = "template"
"""The name of a template trigger's one ``for`` hold (no entity id: it holds no dot)."""


class TemplateTriggerConfig(TriggerConfig):
    """Fires when ``value_template`` renders true after rendering false."""

    kind: Literal["template"]
    value_template: Annotated[str, AfterValidator(watchable("a template trigger", trigger=True))]
    """A template such as ``"{{ states('sensor.power') | float(0) > 3000 }}"``."""
    for_: Duration | None = Field(default=None, alias="for")
    """The result must stay true this long before the trigger fires (a durable timer)."""


@REGISTRY.register
class TemplateTrigger(Trigger[TemplateTriggerConfig]):
    """Offered the changes of the entities its template names (or every change)."""

    CONFIG = TemplateTriggerConfig

    def __init__(self, config: TemplateTriggerConfig) -> None:
        super().__init__(config)
        self.truth = TemplateTruth(config.value_template)

    @property
    def hold(self) -> timedelta | None:
        """The ``for`` duration, if any."""
        return self.config.for_

    def watch(self) -> Watch:
        """The entities its template names, or every entity."""
        return self.truth.watch

    def matches_change(
        self, old: EntityState | None, new: EntityState | None, states: States = NO_STATES
    ) -> bool:
        """Whether the template renders true with the change and did not without it.

        `ExpressionError` if it fails with the change. A change the view does not hold as
        given (a removed entity, or one it already knows a later version of) fires nothing:
        the states before it cannot be told.
        """
        if not self.truth.holds_in(states, new):
            return False
        entity_id = _changed(new, states, self.truth.watch.entities or states)
        if entity_id is None:
            return False
        before = dict(states)
        if old is None:
            before.pop(entity_id, None)
        else:
            before[entity_id] = old
        try:
            return not self.truth.holds_in(before, old)
        except ExpressionError:  # not armed before the change: HA fires only once it was false
            return False

    def still_holds(self, state: EntityState | None, states: States = NO_STATES) -> bool:
        """Whether it still renders true; a failed render keeps the hold (HA ignores it)."""
        try:
            return self.truth.holds_in(states, state)
        except ExpressionError:
            return True

    def held_under(self, entity_id: str) -> str:
        """One hold for the whole trigger, whichever entity changed."""
        return HELD_UNDER

    def unchanged(self, armed: EntityState | None, current: EntityState | None) -> bool:
        """Always: a false render disarms the hold and a new true one replaces it, so a hold
        still armed is the current one."""
        return True

    def changed_at(self, state: EntityState) -> datetime:
        """The time of the change (of the state or an attribute: either may change it)."""
        return state.last_updated


def _changed(new: EntityState | None, states: States, candidates: Iterable[str]) -> str | None:
    if new is None:
        return None
    return next((entity_id for entity_id in candidates if states.get(entity_id) is new), None)
