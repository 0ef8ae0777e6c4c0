"""``repeat``: run actions ``count`` times, ``while``/``until`` conditions hold, or
``for_each`` item, with the variable ``repeat`` (HA's ``index``, ``first``, ``last``,
``item``).

Each iteration is a branch of its own in positions (its number, from 0), so the commands of
each iteration have their own ids, and a run paused in iteration ``n`` (a ``delay`` inside)
resumes there: it finishes that iteration, then runs the next ones. ``count`` and ``for_each``
are rendered once, when the repeat starts, and kept in the run (its record, if it pauses),
so a resumed run iterates over the same items. The engine bounds the iterations
(`ruby_rules.engine.interpreter.MAX_ITERATIONS` per repeat, `MAX_STRETCH_ITERATIONS` between
two pauses): past a bound the run fails.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, JsonValue, model_validator

from ruby_rules.context import Context
from ruby_rules.expressions import ExpressionError
from ruby_rules.processors.base import Action, ActionConfig
from ruby_rules.processors.protocols import Path, StepApi
from ruby_rules.processors.registry import REGISTRY
from ruby_rules.templates import TemplatedValue, compile_value

if TYPE_CHECKING:
    from ruby_rules.processors.base import AnyAction, AnyCondition

_WAYS = ("count", "while_", "until", "for_each")
_MAX_BRANCH = 10**9
"""A position's iteration number is below this (the engine fails a run long before)."""


class RepeatActionConfig(ActionConfig):
    """Runs ``actions`` again and again: exactly one of ``count``, ``while``, ``until``,
    ``for_each`` says how often."""

    kind: Literal["repeat"]
    count: TemplatedValue | None = None
    """How many times: a whole number, or a template giving one (rendered once)."""
    while_: tuple[AnyCondition, ...] | None = Field(default=None, alias="while", min_length=1)
    """Before each iteration: go on while these all hold."""
    until: tuple[AnyCondition, ...] | None = Field(default=None, min_length=1)
    """After each iteration: stop once these all hold."""
    for_each: TemplatedValue | None = None
    """A list (items may hold templates) or a template giving one, rendered once: one
    iteration per item, ``repeat.item``."""
    actions: tuple[AnyAction, ...] = Field(min_length=1)
    """What each iteration runs."""

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        given = [name.rstrip("_") for name in _WAYS if getattr(self, name) is not None]
        if len(given) != 1:
            found = f"; got {', '.join(given)}" if given else ""
            raise ValueError(f"give exactly one of count, while, until, for_each{found}")
        count, items = self.count, self.for_each
        templated = isinstance(count, str) and not compile_value(count).is_static
        if (
            count is not None
            and not templated
            and (isinstance(count, bool) or not isinstance(count, int))
        ):
            raise ValueError("count: expected a whole number, or a template giving one")
        templated = isinstance(items, str) and not compile_value(items).is_static
        if items is not None and not templated and not isinstance(items, list):
            raise ValueError("for_each: expected a list, or a template giving one")
        return self


@REGISTRY.register
class RepeatAction(Action[RepeatActionConfig]):
    """Branch ``n`` is iteration ``n``: the same actions every time."""

    CONFIG = RepeatActionConfig

    def __init__(self, config: RepeatActionConfig) -> None:
        super().__init__(config)
        self._actions = REGISTRY.actions(config.actions)
        self._while = REGISTRY.conditions(config.while_ or ())
        self._until = REGISTRY.conditions(config.until or ())

    def branches(self) -> tuple[tuple[Action[Any], ...], ...]:
        """Its actions (every iteration runs them)."""
        return (self._actions,)

    def branch(self, number: int) -> tuple[Action[Any], ...]:
        """Iteration ``number``'s actions."""
        if not 0 <= number < _MAX_BRANCH:
            raise IndexError(number)
        return self._actions

    def execute(self, step: StepApi, path: Path) -> None:
        """Render ``count``/``for_each`` once, then iterate; a failing template or condition
        fails the run."""
        plan = self._plan(step.ctx)
        step.remember(path, plan)
        self._loop(step, path, 0, plan, None)

    def resume(self, step: StepApi, path: Path, number: int, rest: Path) -> None:
        """Finish iteration ``number`` after ``rest``, then run the next iterations."""
        self._loop(step, path, number, step.remembered(path), rest)

    def _loop(
        self, step: StepApi, path: Path, number: int, plan: JsonValue, rest: Path | None
    ) -> None:
        while True:
            variables = {"repeat": _variable(number, plan)}
            if rest is not None:  # resumed inside this iteration
                step.run_branch(self._actions, path, number, resume_after=rest)
                rest = None
            else:
                if not self._another(step.ctx, number, plan, variables):
                    break
                step.iteration(path, number)
                step.run_branch(self._actions, path, number, variables=variables)
            if self._until and _all(self._until, step.ctx, variables):
                number += 1
                break
            number += 1
        step.remember(path, None)
        step.trace(path, "repeat", f"done after {number} iterations")

    def _another(
        self, ctx: Context, number: int, plan: JsonValue, variables: dict[str, JsonValue]
    ) -> bool:
        if isinstance(plan, int):
            return number < plan
        if isinstance(plan, list):
            return number < len(plan)
        return not self._while or _all(self._while, ctx, variables)

    def _plan(self, ctx: Context) -> JsonValue:
        config = self.config
        if config.count is not None:
            count = compile_value(config.count).render(ctx)
            if isinstance(count, float) and count.is_integer():
                count = int(count)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ExpressionError(f"repeat count {config.count!r} gave {count!r}: expected "
                                      "a whole number, 0 or more")  # fmt: skip
            return count
        if config.for_each is not None:
            items = compile_value(config.for_each).render(ctx)
            if not isinstance(items, list):
                raise ExpressionError(
                    f"repeat for_each {config.for_each!r} gave {items!r}: expected a list"
                )
            return items
        return None


def _variable(number: int, plan: JsonValue) -> JsonValue:
    value: dict[str, JsonValue] = {"first": number == 0, "index": number + 1}
    if isinstance(plan, int):
        value["last"] = number == plan - 1
    elif isinstance(plan, list):
        value["last"] = number == len(plan) - 1
        value["item"] = plan[number] if number < len(plan) else None
    return value


def _all(conditions: tuple[Any, ...], ctx: Context, variables: dict[str, JsonValue]) -> bool:
    seen = replace(ctx, variables={**ctx.variables, **variables})
    return all(condition.holds(seen) for condition in conditions)
