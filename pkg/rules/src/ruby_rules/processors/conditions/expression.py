"""``expression``: holds when a template, such as ``{{ now().hour >= 22 }}``, renders ``true``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Condition, ConditionConfig, States
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.templates import compile_value


def _an_expression(value: str) -> str:
    if compile_value(value).is_static:
        raise ExpressionError(
            f"{value!r} holds no template: expected one such as "
            "\"{{ states('sensor.power') | float > 3000 }}\""
        )
    return value


class ExpressionConditionConfig(ConditionConfig):
    """Holds when ``value`` renders the text ``true`` (any case, spaces around ignored), as
    Home Assistant's ``template`` condition does; anything else (``1``, ``on``, ``None``)
    does not hold."""

    kind: Literal["expression"]
    value: Annotated[str, AfterValidator(_an_expression)]
    """A text holding a template, such as ``"{{ is_state('light.hallway', 'on') }}"``."""


@REGISTRY.register
class ExpressionCondition(Condition[ExpressionConditionConfig]):
    """Reads the trigger, so it overrides `holds`; an expression that fails raises."""

    CONFIG = ExpressionConditionConfig

    def evaluate(self, states: States, now: datetime) -> bool:
        """Whether it holds outside any run: ``trigger`` reads as None."""
        return self.holds(Context(states=states, now=now))

    def holds(self, ctx: Context) -> bool:
        """Whether the rendered text is ``true``; `ExpressionError` if the template fails."""
        return compile_value(self.config.value).render_text(ctx).lower() == "true"
