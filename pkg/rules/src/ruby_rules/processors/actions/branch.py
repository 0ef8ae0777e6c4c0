"""``choose`` and ``if``: run one sequence of actions depending on conditions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.registry import REGISTRY

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyAction, AnyCondition


def _all_hold(conditions: tuple[AnyCondition, ...], ctx: Context) -> bool:
    return all(REGISTRY.condition(config).holds(ctx) for config in conditions)


@REGISTRY.model
class ChooseOption(BaseModel):
    """One option of ``choose``: its actions run when all its conditions hold."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """What must hold."""
    actions: tuple[AnyAction, ...] = Field(min_length=1)
    """What runs."""


class ChooseActionConfig(ActionConfig):
    """Runs the actions of the first option whose conditions hold, else ``default``."""

    kind: Literal["choose"]
    options: tuple[ChooseOption, ...] = Field(min_length=1)
    """The options, tried in order."""
    default: tuple[AnyAction, ...] = ()
    """What runs when no option matches."""


class IfActionConfig(ActionConfig):
    """Runs ``then`` when all ``conditions`` hold, else ``else``."""

    kind: Literal["if"]
    conditions: tuple[AnyCondition, ...] = Field(min_length=1)
    """What must hold."""
    then: tuple[AnyAction, ...] = Field(min_length=1)
    """What runs when they hold."""
    else_: tuple[AnyAction, ...] = Field(default=(), alias="else")
    """What runs otherwise."""


@REGISTRY.register
class ChooseAction(Action[ChooseActionConfig]):
    """Selecting the branch is pure; running it arrives with the engine's runner."""

    CONFIG = ChooseActionConfig

    def select(self, ctx: Context) -> tuple[AnyAction, ...]:
        """The actions to run: the first option whose conditions hold in ``ctx``, else ``default``.

        Raises `ruby_rules.expressions.ExpressionError` if an ``expression`` condition fails.
        """
        for option in self.config.options:
            if _all_hold(option.conditions, ctx):
                return option.actions
        return self.config.default


@REGISTRY.register
class IfAction(Action[IfActionConfig]):
    """Selecting the branch is pure; running it arrives with the engine's runner."""

    CONFIG = IfActionConfig

    def select(self, ctx: Context) -> tuple[AnyAction, ...]:
        """``then`` when every condition holds in ``ctx``, else ``else``.

        Raises `ruby_rules.expressions.ExpressionError` if an ``expression`` condition fails.
        """
        if _all_hold(self.config.conditions, ctx):
            return self.config.then
        return self.config.else_
