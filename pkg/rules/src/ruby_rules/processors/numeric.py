"""The ``above`` / ``below`` range shared by the numeric trigger and condition.

A bound is a number or, as in Home Assistant, the entity whose numeric state is the bound
(``above: input_number.comfort_max``). The value compared is the entity's state, one of its
attributes, or what ``value_template`` computes from the entity's state object (``state``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated, Any, Final, Self, TypeAlias

from pydantic import AfterValidator, BeforeValidator, JsonValue, model_validator

from ruby_rules.context import Context, States
from ruby_rules.jinja.states import view
from ruby_rules.processors.base import ProcessorConfig
from ruby_rules.processors.triggers.entity import watched_value
from ruby_rules.processors.types import is_entity_id
from ruby_rules.processors.types import number as strict_number
from ruby_rules.templates import compile_value
from ruby_schemas.ha_events import EntityState

BOUND_DOMAINS: Final = ("input_number", "number", "sensor", "zone")
"""The domains whose entity may be a bound, as Home Assistant accepts them (a zone's state
is how many people are in it)."""
_NOT_A_NUMBER: Final = frozenset({"unavailable", "unknown"})


def _bound(value: Any) -> Any:
    if not isinstance(value, str):
        return strict_number(value)
    if not is_entity_id(value) or value.partition(".")[0] not in BOUND_DOMAINS:
        domains = ", ".join(BOUND_DOMAINS)
        raise ValueError(
            f"expected a number or an entity of {domains} (such as input_number.low); "
            f"got {value[:80]!r}"
        )
    return value


Bound: TypeAlias = Annotated[float | str, BeforeValidator(_bound)]
"""A number within ±`MAX_NUMBER`, or an entity whose numeric state is the bound."""


def _an_expression(value: str) -> str:
    if compile_value(value).is_static:
        raise ValueError(
            f'{value!r} holds no template: expected one such as "{{{{ state.state }}}}"'
        )
    return value


ValueTemplate: TypeAlias = Annotated[str, AfterValidator(_an_expression)]
"""A template computing the value from ``state`` (the entity's state object)."""


def as_number(value: JsonValue) -> float | None:
    """``value`` as a finite number, as Home Assistant reads one; None if it is none
    (``unavailable``, ``unknown``, text that is not a number, nothing, a list)."""
    if value is None or isinstance(value, list | dict) or value in _NOT_A_NUMBER:
        return None
    try:
        found = float(value)
    except ValueError:
        return None
    return found if math.isfinite(found) else None


class NumericRange(ProcessorConfig):
    """``above`` and/or ``below`` bounds (both exclusive); at least one is required."""

    above: Bound | None = None
    """The value must be greater than this number, or than this entity's numeric state."""
    below: Bound | None = None
    """The value must be less than this number, or than this entity's numeric state."""
    value_template: ValueTemplate | None = None
    """Compare what this template renders, given ``state`` (the entity's state object),
    instead of the state or attribute."""

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        above, below = self.above, self.below
        if above is None and below is None:
            raise ValueError("expected 'above', 'below' or both")
        if isinstance(above, float) and isinstance(below, float) and above >= below:
            raise ValueError(f"'above' ({above}) must be less than 'below' ({below})")
        return self

    def bound_entities(self) -> tuple[str, ...]:
        """The entities read as bounds."""
        return tuple(bound for bound in (self.above, self.below) if isinstance(bound, str))

    def within(self, value: JsonValue, states: States) -> bool:
        """Whether ``value`` reads as a finite number strictly inside the range; a bound
        entity that is missing, ``unavailable`` or not a number puts nothing in range."""
        found = as_number(value)
        if found is None:
            return False
        above = _limit(self.above, states, -math.inf)
        below = _limit(self.below, states, math.inf)
        return above is not None and below is not None and above < found < below

    def in_range(
        self, entity_id: str, state: EntityState | None, attribute: str | None, ctx: Context
    ) -> bool:
        """Home Assistant's numeric test of one entity: its state, ``attribute`` (missing: not
        in range) or ``value_template`` value lies in the range. `ExpressionError` (a
        `ValueError`) when the template fails."""
        if state is None or (attribute is not None and attribute not in state.attributes):
            return False
        if self.value_template is None:
            return self.within(watched_value(state, attribute), ctx.states)
        scope = replace(ctx, names={**ctx.names, "state": view(entity_id, state)})
        return self.within(compile_value(self.value_template).render(scope), ctx.states)


def _limit(bound: float | str | None, states: States, missing: float) -> float | None:
    if bound is None:
        return missing
    if isinstance(bound, float):
        return bound
    entity = states.get(bound)
    return None if entity is None else as_number(entity.state)
