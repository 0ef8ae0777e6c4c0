"""``choose`` and ``if``: run one sequence of actions depending on conditions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ruby_rules.context import Context
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyAction, AnyCondition


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


B = TypeVar("B", ChooseActionConfig, IfActionConfig)


class _Branching(Action[B]):
    """Runs one of its numbered branches, chosen by `take`; positions record the branch, so a
    resumed run never re-decides it."""

    def take(self, ctx: Context) -> int:
        """The number of the branch to run in ``ctx``; subclasses decide."""
        raise NotImplementedError

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """The numbered branches; subclasses build them."""
        raise NotImplementedError

    def execute(self, step: StepApi, path: Path) -> None:
        """Choose a branch and run it."""
        branch = self.take(step.ctx)
        step.trace(path, self.config.kind, f"took branch {branch}")
        step.run_branch(self.branches()[branch], path, branch)


@REGISTRY.register
class ChooseAction(_Branching[ChooseActionConfig]):
    """Branches: each option's actions in order, then ``default``."""

    CONFIG = ChooseActionConfig

    def __init__(self, config: ChooseActionConfig) -> None:
        super().__init__(config)
        self._tests = tuple(REGISTRY.conditions(option.conditions) for option in config.options)
        self._branches = (
            *(REGISTRY.actions(option.actions) for option in config.options),
            REGISTRY.actions(config.default),
        )

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """Option 0, 1... then ``default`` (numbered after the last option)."""
        return self._branches

    def take(self, ctx: Context) -> int:
        """The first option whose conditions all hold in ``ctx``, else ``default``.

        Raises `ruby_rules.expressions.ExpressionError` if an ``expression`` condition fails.
        """
        for number, conditions in enumerate(self._tests):
            if all(condition.holds(ctx) for condition in conditions):
                return number
        return len(self._tests)


@REGISTRY.register
class IfAction(_Branching[IfActionConfig]):
    """Branches: 0 ``then``, 1 ``else``."""

    CONFIG = IfActionConfig

    def __init__(self, config: IfActionConfig) -> None:
        super().__init__(config)
        self._conditions = REGISTRY.conditions(config.conditions)
        self._branches = (REGISTRY.actions(config.then), REGISTRY.actions(config.else_))

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """``then``, ``else``."""
        return self._branches

    def take(self, ctx: Context) -> int:
        """0 (``then``) when every condition holds in ``ctx``, else 1 (``else``).

        Raises `ruby_rules.expressions.ExpressionError` if an ``expression`` condition fails.
        """
        return 0 if all(condition.holds(ctx) for condition in self._conditions) else 1
